"""`mindie-pack bench`: load generation with an async httpx client; TTFT, ITL, TPOT, E2E, throughput, goodput.

Token counts come from the server (OpenAI `usage`, TGI/native `details.generated_tokens`, asked for with
`details`), never from re-tokenizing text on the client; streams are decoded by `mindie_pack.wire` (the same decoder
as smoke). A request that gets fewer tokens than --output-len is reported as short, not as complete.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mindie_pack.client.target import Target
from mindie_pack.client.transport import DEFAULT_DEADLINE_S, HttpStatusError, NoAnswer, stream_async, timeouts
from mindie_pack.errors import PackError
from mindie_pack.wire.format import request_body

API_OF = {"openai-chat": "openai-chat", "openai-completions": "openai-completions", "tgi": "tgi", "native": "infer",
          "vllm": "vllm"}
MINDIE_NAMES = {"ttft_ms": "FirstTokenTime", "itl_ms": "DecodeTime", "e2e_ms": "GenerateTime", "tpot_ms": "TPOT"}
# The client is called the bottleneck when it sends slower than asked, or later than scheduled by more than this.
RATE_SHORTFALL = 0.9
LAG_WARN_MS = 10.0
LAG_WARN_SHARE = 0.25  # ... or by more than this share of the mean inter-arrival time


@dataclass
class RequestRecord:
    start: float
    scheduled: float | None = None  # when the arrival process wanted to send it (open loop)
    requested_tokens: int = 0
    ok: bool = False
    error: str | None = None
    first_token: float | None = None
    token_times: list[float] = field(default_factory=list)
    end: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None

    @property
    def short(self) -> bool:
        """Fewer output tokens than requested (the server stopped early, or the stream lost some)."""
        return self.ok and self.output_tokens is not None and self.output_tokens < self.requested_tokens

    @property
    def ttft_ms(self) -> float | None:
        return (self.first_token - self.start) * 1000 if self.first_token is not None else None

    @property
    def e2e_ms(self) -> float | None:
        return (self.end - self.start) * 1000 if self.end is not None else None

    @property
    def tpot_ms(self) -> float | None:
        if self.output_tokens and self.output_tokens > 1 and self.e2e_ms is not None and self.ttft_ms is not None:
            return (self.e2e_ms - self.ttft_ms) / (self.output_tokens - 1)
        return None

    @property
    def itls_ms(self) -> list[float]:
        return [(b - a) * 1000 for a, b in zip(self.token_times, self.token_times[1:], strict=False)]

    @property
    def lag_ms(self) -> float | None:
        return (self.start - self.scheduled) * 1000 if self.scheduled is not None else None


@dataclass
class BenchConfig:
    endpoint: str = "openai-chat"
    concurrency: int | None = 1
    rate: float | None = None
    requests: int | None = 50
    duration_s: float | None = None
    input_len: int = 32
    output_len: int = 64
    dataset: Path | None = None
    warmup: int = 2
    slo_ttft_ms: float | None = None
    slo_tpot_ms: float | None = None
    seed: int = 0
    timeout_s: float = DEFAULT_DEADLINE_S  # per request, connect within 5 s


def percentiles(values: list[float]) -> dict[str, float | None]:
    if not values:
        return {"mean": None, "p50": None, "p90": None, "p99": None}
    ordered = sorted(values)

    def pct(p: float) -> float:
        index = (len(ordered) - 1) * p
        low, high = int(index), min(int(index) + 1, len(ordered) - 1)
        return ordered[low] + (ordered[high] - ordered[low]) * (index - low)

    return {"mean": round(statistics.fmean(ordered), 3), "p50": round(pct(0.5), 3), "p90": round(pct(0.9), 3),
            "p99": round(pct(0.99), 3)}


def load_prompts(config: BenchConfig) -> list[str]:
    if config.dataset is None:
        words = ("the", "quick", "brown", "fox", "jumps", "over", "lazy", "dog")
        return [" ".join(words[(i + j) % len(words)] for j in range(config.input_len)) for i in range(64)]
    try:
        data = json.loads(config.dataset.read_text())
    except (OSError, ValueError) as exc:
        raise PackError(f"--dataset {config.dataset}: unreadable ({exc})") from exc
    prompts = []
    for item in data if isinstance(data, list) else []:
        turns = item.get("conversations") or item.get("conversation") or [] if isinstance(item, dict) else []
        first = next((t.get("value") for t in turns if isinstance(t, dict) and t.get("from") in ("human", "user")),
                     None)
        if isinstance(first, str) and first.strip():
            prompts.append(first)
    if not prompts:
        raise PackError(f"--dataset {config.dataset}: no ShareGPT conversations with a human turn")
    return prompts


def request_payload(endpoint: str, model: str | None, prompt: str, output_len: int) -> tuple[str, dict[str, Any]]:
    """Streamed, with the server's token counts asked for (details) and eos ignored where the API reads it."""
    return request_body(API_OF[endpoint], prompt, output_len, model=model, stream=True, details=True,
                        ignore_eos=True)


async def one_request(client: httpx.AsyncClient, target: Target, config: BenchConfig, prompt: str,
                      scheduled: float | None = None) -> RequestRecord:
    path, payload = request_payload(config.endpoint, target.model, prompt, config.output_len)
    record = RequestRecord(start=time.perf_counter(), scheduled=scheduled, requested_tokens=config.output_len)
    try:
        result = await stream_async(client, target.business_url + path, payload, API_OF[config.endpoint],
                                    config.timeout_s)
    except HttpStatusError as exc:
        record.error = f"http {exc.status}"
        return record
    except NoAnswer as exc:
        record.error = str(exc)
        return record
    except httpx.HTTPError as exc:
        record.error = type(exc).__name__
        return record
    record.end = time.perf_counter()
    record.token_times = list(result.event_times)
    record.first_token = result.first_output
    record.prompt_tokens = result.prompt_tokens
    record.output_tokens = result.received_tokens
    if result.problems:
        record.error = result.problems[0][:120]
    elif record.first_token is None:
        record.error = "no tokens"
    elif not result.finished:
        record.error = "stream ended without its final event"
    else:
        record.ok = True
    return record


async def run_load(target: Target, config: BenchConfig, on_done: Callable[[RequestRecord], None] | None = None
                   ) -> tuple[list[RequestRecord], float]:
    prompts = load_prompts(config)
    rng = random.Random(config.seed)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=timeouts(config.timeout_s), limits=limits, trust_env=False) as client:
        for i in range(config.warmup):
            await one_request(client, target, config, prompts[i % len(prompts)])
        records: list[RequestRecord] = []
        start = time.perf_counter()
        deadline = start + config.duration_s if config.duration_s else None
        total = config.requests if not config.duration_s else None
        issued = 0

        def more() -> bool:
            return (total is None or issued < total) and (deadline is None or time.perf_counter() < deadline)

        async def run(prompt: str, scheduled: float | None = None) -> None:
            record = await one_request(client, target, config, prompt, scheduled)
            records.append(record)
            if on_done:
                on_done(record)

        if config.rate:
            tasks = []
            next_at = start
            while more():
                prompt = prompts[issued % len(prompts)]
                issued += 1
                tasks.append(asyncio.create_task(run(prompt, next_at)))
                next_at += rng.expovariate(config.rate)  # Poisson arrivals
                # Always yield, also when behind schedule: the requests just created must start sending now,
                # not after the arrival loop has caught up (that queued them inside the client).
                await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            await asyncio.gather(*tasks)
        else:
            async def worker() -> None:
                nonlocal issued
                while more():
                    prompt = prompts[issued % len(prompts)]
                    issued += 1
                    await run(prompt)
            await asyncio.gather(*(worker() for _ in range(config.concurrency or 1)))
        return records, time.perf_counter() - start


def arrival(records: list[RequestRecord], config: BenchConfig) -> dict[str, Any]:
    """Requested vs achieved arrival rate and how late requests left the client (open loop only). The achieved
    rate is compared with the rate of the Poisson schedule actually drawn (a finite sample is never exactly
    --rate); the client is called the bottleneck when it sent under 90% of that, or when its send lag (p90) exceeds
    both 10 ms and a quarter of the mean inter-arrival time."""
    empty = {"requested_rate": config.rate, "scheduled_rate": None, "achieved_rate": None, "lag_ms": percentiles([]),
             "client_bound": False}
    if not config.rate or len(records) < 2:
        return empty

    def rate(times: list[float]) -> float | None:
        times = sorted(times)
        return (len(times) - 1) / (times[-1] - times[0]) if times[-1] > times[0] else None

    achieved = rate([r.start for r in records])
    scheduled = rate([r.scheduled for r in records if r.scheduled is not None])
    lag = percentiles([r.lag_ms for r in records if r.lag_ms is not None])
    bound = (achieved is not None and scheduled is not None and achieved < RATE_SHORTFALL * scheduled) or \
        (lag["p90"] is not None and lag["p90"] > max(LAG_WARN_MS, LAG_WARN_SHARE * 1000.0 / config.rate))
    return {"requested_rate": config.rate, "scheduled_rate": round(scheduled, 3) if scheduled else None,
            "achieved_rate": round(achieved, 3) if achieved else None, "lag_ms": lag, "client_bound": bound}


def summarize(records: list[RequestRecord], wall_s: float, config: BenchConfig) -> dict[str, Any]:
    ok = [r for r in records if r.ok]
    ttft = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    tpot = [r.tpot_ms for r in ok if r.tpot_ms is not None]
    e2e = [r.e2e_ms for r in ok if r.e2e_ms is not None]
    itl = [v for r in ok for v in r.itls_ms]
    output_tokens = sum(r.output_tokens or 0 for r in ok)
    short = [r for r in ok if r.short]

    def meets(r: RequestRecord) -> bool:
        ttft_ok = config.slo_ttft_ms is None or (r.ttft_ms is not None and r.ttft_ms <= config.slo_ttft_ms)
        tpot_ok = config.slo_tpot_ms is None or r.tpot_ms is None or r.tpot_ms <= config.slo_tpot_ms
        return ttft_ok and tpot_ok

    good = [r for r in ok if meets(r)]
    return {
        "endpoint": config.endpoint, "requests": len(records), "succeeded": len(ok), "failed": len(records) - len(ok),
        "complete": len(ok) - len(short), "short": len(short),
        "errors": dict(Counter(r.error or "unknown" for r in records if not r.ok)),
        "output_tokens_requested": config.output_len * len(records), "output_tokens": output_tokens,
        "duration_s": round(wall_s, 3), "request_throughput": round(len(ok) / wall_s, 3) if wall_s else None,
        "output_token_throughput": round(output_tokens / wall_s, 3) if wall_s else None,
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in ok),
        "goodput": round(len(good) / wall_s, 3) if wall_s else None, "slo_met": len(good),
        "slo": {"ttft_ms": config.slo_ttft_ms, "tpot_ms": config.slo_tpot_ms},
        "ttft_ms": percentiles(ttft), "tpot_ms": percentiles(tpot), "itl_ms": percentiles(itl),
        "e2e_ms": percentiles(e2e), "arrival": arrival(records, config), "mindie_names": MINDIE_NAMES,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
    }


def check_output_path(path: Path, flag: str) -> None:
    """Refuse an output path before the run, not after it has thrown the results away."""
    if path.is_dir():
        raise PackError(f"{flag} {path}: is a directory, expected a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise PackError(f"{flag} {path}: the folder {parent} does not exist")
    if path.exists() and not os.access(path, os.W_OK):
        raise PackError(f"{flag} {path}: not writable")
    if not path.exists() and not os.access(parent, os.W_OK | os.X_OK):
        raise PackError(f"{flag} {path}: cannot create a file in {parent} (permission denied)")


def write_output(path: Path, flag: str, write: Callable[[Path], None]) -> None:
    try:
        write(path)
    except OSError as exc:
        raise PackError(f"{flag} {path}: {exc.strerror or exc}") from None


def require_plotting() -> None:
    try:
        import matplotlib  # noqa: F401
    except ImportError as exc:
        raise PackError("--plot needs matplotlib (pip install 'mindie-pack[plot]')") from exc


def plot(records: list[RequestRecord], path: Path) -> None:
    require_plotting()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    ok = [r for r in records if r.ok]
    fig, axes = plt.subplots(2, 2, figsize=(11, 8))
    for axis, (name, values) in zip(axes.flat[:3], (
        ("TTFT (FirstTokenTime) ms", [r.ttft_ms for r in ok]), ("TPOT ms", [r.tpot_ms for r in ok if r.tpot_ms]),
        ("E2E (GenerateTime) ms", [r.e2e_ms for r in ok]),
    ), strict=True):
        axis.hist([v for v in values if v is not None], bins=30)
        axis.set_title(name)
    if ok:
        start = min(r.start for r in ok)
        ends = sorted((r.end or start) - start for r in ok)
        seconds = int(ends[-1]) + 1
        per_second = [sum(1 for e in ends if s <= e < s + 1) for s in range(seconds)]
        axes.flat[3].plot(range(seconds), per_second)
    axes.flat[3].set_title("completed requests per second")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
