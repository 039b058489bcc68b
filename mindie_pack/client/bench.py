"""`mindie-pack bench`: load generation with an async httpx client; TTFT, ITL, TPOT, E2E, throughput, goodput.

Token counts come from the server (OpenAI `usage`, TGI/native `details.generated_tokens`), never from
re-tokenizing text on the client.
"""

from __future__ import annotations

import asyncio
import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from mindie_pack.client.endpoints import ENDPOINTS  # noqa: F401 - re-exported; its home is light for --help
from mindie_pack.client.sse import aiter_sse_data
from mindie_pack.client.target import Target
from mindie_pack.errors import PackError

MINDIE_NAMES = {"ttft_ms": "FirstTokenTime", "itl_ms": "DecodeTime", "e2e_ms": "GenerateTime", "tpot_ms": "TPOT"}


@dataclass
class RequestRecord:
    start: float
    ok: bool = False
    error: str | None = None
    first_token: float | None = None
    token_times: list[float] = field(default_factory=list)
    end: float | None = None
    prompt_tokens: int | None = None
    output_tokens: int | None = None

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
    timeout_s: float = 600.0


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
    if endpoint == "openai-chat":
        return "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": prompt}],
                                        "max_tokens": output_len, "stream": True, "ignore_eos": True}
    if endpoint == "openai-completions":
        return "/v1/completions", {"model": model, "prompt": prompt, "max_tokens": output_len, "stream": True,
                                   "ignore_eos": True}
    if endpoint == "tgi":
        return "/generate_stream", {"inputs": prompt, "stream": True, "parameters": {
            "max_new_tokens": output_len, "ignore_eos": True, "details": True}}
    return "/infer", {"inputs": prompt, "stream": True, "parameters": {"max_new_tokens": output_len,
                                                                         "ignore_eos": True}}


def _event_has_token(endpoint: str, event: dict[str, Any]) -> bool:
    if endpoint == "openai-chat":
        choices = event.get("choices") or []
        return bool(choices) and bool((choices[0].get("delta") or {}).get("content"))
    if endpoint == "openai-completions":
        choices = event.get("choices") or []
        return bool(choices) and choices[0].get("finish_reason") is None and bool(choices[0].get("text"))
    token = event.get("token")
    return isinstance(token, dict) and token.get("id") is not None and event.get("generated_text") is None


def _server_counts(endpoint: str, event: dict[str, Any], record: RequestRecord) -> None:
    if endpoint.startswith("openai") and isinstance(event.get("usage"), dict):
        record.prompt_tokens = event["usage"].get("prompt_tokens")
        record.output_tokens = event["usage"].get("completion_tokens")
    elif isinstance(event.get("details"), dict):
        record.output_tokens = event["details"].get("generated_tokens")
        record.prompt_tokens = event["details"].get("prompt_tokens", record.prompt_tokens)


async def one_request(client: httpx.AsyncClient, target: Target, config: BenchConfig, prompt: str) -> RequestRecord:
    path, payload = request_payload(config.endpoint, target.model, prompt, config.output_len)
    record = RequestRecord(start=time.perf_counter())
    try:
        async with client.stream("POST", target.business_url + path, json=payload) as response:
            if response.status_code != 200:
                await response.aread()
                record.error = f"http {response.status_code}"
                return record
            async for data in aiter_sse_data(response):
                now = time.perf_counter()
                if data == "[DONE]":
                    continue
                try:
                    event = json.loads(data)
                except ValueError:
                    record.error = "bad event"
                    return record
                if _event_has_token(config.endpoint, event):
                    record.first_token = record.first_token or now
                    record.token_times.append(now)
                _server_counts(config.endpoint, event, record)
        record.end = time.perf_counter()
        record.ok = record.first_token is not None and record.output_tokens is not None
        if not record.ok:
            record.error = "no tokens" if record.first_token is None else "no token count from the server"
    except httpx.TimeoutException:
        record.error = "timeout"
    except httpx.HTTPError as exc:
        record.error = type(exc).__name__
    return record


async def run_load(target: Target, config: BenchConfig, on_done: Callable[[RequestRecord], None] | None = None
                   ) -> tuple[list[RequestRecord], float]:
    prompts = load_prompts(config)
    rng = random.Random(config.seed)
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=config.timeout_s, limits=limits, trust_env=False) as client:
        for i in range(config.warmup):
            await one_request(client, target, config, prompts[i % len(prompts)])
        records: list[RequestRecord] = []
        start = time.perf_counter()
        deadline = start + config.duration_s if config.duration_s else None
        total = config.requests if not config.duration_s else None
        issued = 0

        def more() -> bool:
            return (total is None or issued < total) and (deadline is None or time.perf_counter() < deadline)

        async def run(prompt: str) -> None:
            record = await one_request(client, target, config, prompt)
            records.append(record)
            if on_done:
                on_done(record)

        if config.rate:
            tasks = []
            next_at = start
            while more():
                prompt = prompts[issued % len(prompts)]
                issued += 1
                tasks.append(asyncio.create_task(run(prompt)))
                next_at += rng.expovariate(config.rate)  # Poisson arrivals
                delay = next_at - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
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


def summarize(records: list[RequestRecord], wall_s: float, config: BenchConfig) -> dict[str, Any]:
    ok = [r for r in records if r.ok]
    ttft = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    tpot = [r.tpot_ms for r in ok if r.tpot_ms is not None]
    e2e = [r.e2e_ms for r in ok if r.e2e_ms is not None]
    itl = [v for r in ok for v in r.itls_ms]
    output_tokens = sum(r.output_tokens or 0 for r in ok)

    def meets(r: RequestRecord) -> bool:
        return (config.slo_ttft_ms is None or (r.ttft_ms or 0) <= config.slo_ttft_ms) and \
            (config.slo_tpot_ms is None or (r.tpot_ms or 0) <= config.slo_tpot_ms)

    good = [r for r in ok if meets(r)]
    return {
        "endpoint": config.endpoint, "requests": len(records), "succeeded": len(ok), "failed": len(records) - len(ok),
        "errors": dict(Counter(r.error or "unknown" for r in records if not r.ok)),
        "duration_s": round(wall_s, 3), "request_throughput": round(len(ok) / wall_s, 3) if wall_s else None,
        "output_token_throughput": round(output_tokens / wall_s, 3) if wall_s else None,
        "prompt_tokens": sum(r.prompt_tokens or 0 for r in ok), "output_tokens": output_tokens,
        "goodput": round(len(good) / wall_s, 3) if wall_s else None, "slo": {"ttft_ms": config.slo_ttft_ms,
                                                                            "tpot_ms": config.slo_tpot_ms},
        "ttft_ms": percentiles(ttft), "tpot_ms": percentiles(tpot), "itl_ms": percentiles(itl),
        "e2e_ms": percentiles(e2e), "mindie_names": MINDIE_NAMES,
        "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(config).items()},
    }


def plot(records: list[RequestRecord], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise PackError("--plot needs matplotlib (pip install 'mindie-pack[plot]')") from exc
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
