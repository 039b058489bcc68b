"""Benchmark: is `mindie-pack bench` ever the bottleneck? Against the emulator's fake model (fixed prefill), compare
the TTFT bench measures with the TTFT a minimal hand-written httpx loop measures, at rising Poisson rates, in the
same run: at each rate both run at the same time in one event loop, each at half the rate, so both see the same
server and the same machine load.

    python benchmarks/bench_client.py [--prefill-ms 50] [--seconds 3] [--rates 10,20,40,80,160,320] [--rounds 1]

Per rate it prints the requested and achieved arrival rate of each client, the mean TTFT each measures and their
ratio. A rate counts as sustained by the loop when it sends at >= 90% of the rate of the Poisson schedule drawn.
Target (issue 13): bench within 10% of the loop's TTFT at every rate the loop sustains; bench warns when the client
is the bottleneck.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from mindie_pack.client.bench import BenchConfig, arrival, run_load
from mindie_pack.client.target import Target

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


async def minimal_loop(url: str, model: str, rate: float, count: int, output_len: int
                       ) -> tuple[list[float], float | None]:
    """The simplest correct measurement: Poisson arrivals, stream, time to the first content chunk."""
    rng = random.Random(2)
    ttfts: list[float] = []
    starts: list[float] = []
    scheduled: list[float] = []
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None), trust_env=False) as client:
        async def one() -> None:
            start = time.perf_counter()
            starts.append(start)
            payload = {"model": model, "messages": [{"role": "user", "content": "hello there"}],
                       "max_tokens": output_len, "stream": True}
            first = None
            async with client.stream("POST", f"{url}/v1/chat/completions", json=payload) as response:
                async for line in response.aiter_lines():
                    if first is None and line.startswith("data: ") and '"content":"' in line \
                            and '"content":""' not in line:
                        first = (time.perf_counter() - start) * 1000
            if first is not None:
                ttfts.append(first)
        tasks, next_at = [], time.perf_counter()
        for _ in range(count):
            scheduled.append(next_at)
            tasks.append(asyncio.create_task(one()))
            next_at += rng.expovariate(rate)
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await asyncio.gather(*tasks)
    starts.sort()
    achieved = (len(starts) - 1) / (starts[-1] - starts[0])
    return ttfts, achieved / ((len(scheduled) - 1) / (scheduled[-1] - scheduled[0]))


async def side_by_side(target: Target, rate: float, count: int, output_len: int
                       ) -> tuple[list[float], dict[str, Any], list[float], float]:
    """bench and the minimal loop at the same time, each at half the rate, in one event loop: both see the same
    server and the same machine load (this machine is shared; measuring them one after the other compared two
    different moments of its load more than two clients)."""
    config = BenchConfig(endpoint="openai-chat", concurrency=None, rate=rate / 2, requests=count // 2,
                         output_len=output_len, warmup=2, input_len=2, seed=1)
    (records, _), (loop_ttft, loop_rate) = await asyncio.gather(
        run_load(target, config), minimal_loop(target.business_url, target.model or "", rate / 2, count // 2,
                                               output_len))
    ours = [r.ttft_ms for r in records if r.ok and r.ttft_ms is not None]
    return ours, arrival(records, config), loop_ttft, loop_rate


def main() -> None:
    from mindie_pack.emulator.install import install_emulator

    from deploy_helpers import build_tiny, free_port_block
    from emulator_helpers import write_config_for

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefill-ms", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--rates", default="10,20,40,80,160,320")
    parser.add_argument("--output-len", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1, help="measure each rate this many times (median)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="mindie-pack-client-bench-") as tmp:
        root = Path(tmp)
        _, model_dir = build_tiny(root / "m", tp=1)
        service = install_emulator(root / "Ascend", fake_model=True, prefill_ms=args.prefill_ms,
                                   per_token_ms=1).mindie_service
        port = free_port_block()
        config = write_config_for(model_dir, root / "config.json", port, "ScheduleConfig.maxIterTimes=64")
        model = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["modelName"]
        env = {**os.environ, "MIES_CONFIG_JSON_PATH": str(root / "config.json")}
        proc = subprocess.Popen([str(service / "bin" / "mindieservice_daemon")], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            assert proc.stdout is not None
            for line in proc.stdout:
                if "Daemon start success!" in line:
                    break
            url = f"http://127.0.0.1:{port}"
            target = Target(url, f"http://127.0.0.2:{port + 1}", None, model)
            rows = []
            for rate in (float(r) for r in args.rates.split(",")):
                count = max(8, int(rate * args.seconds))
                ours_ttft, loop_ttft, ours_rate, loop_rate, lags, bound = [], [], [], [], [], False
                for _ in range(args.rounds):
                    values, arr, loop_values, achieved = asyncio.run(side_by_side(target, rate, count,
                                                                                  args.output_len))
                    ours_ttft.append(statistics.fmean(values))
                    ours_rate.append((arr["achieved_rate"] or 0.0) / (arr["scheduled_rate"] or rate))
                    bound = bound or bool(arr["client_bound"])
                    lags.append(arr["lag_ms"]["p90"] or 0.0)
                    loop_ttft.append(statistics.fmean(loop_values))
                    loop_rate.append(achieved)
                rows.append((rate, statistics.median(ours_rate), statistics.median(loop_rate),
                             statistics.median(ours_ttft), statistics.median(loop_ttft), bound,
                             statistics.median(lags)))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    print(f"\nfake model prefill {args.prefill_ms:g} ms, {args.output_len} tokens, ~{args.seconds:g} s per rate, "
          f"{args.rounds} round(s)")
    print("achieved = sent rate / the rate of the Poisson schedule drawn (1.00 = on schedule)")
    print(f"{'rate req/s':>10} {'achieved bench':>15} {'achieved loop':>14} {'bench TTFT ms':>14} "
          f"{'loop TTFT ms':>13} {'ratio':>6} {'bench lag p90 ms':>16}  verdict")
    worst = None
    for rate, ours_rate, loop_rate, ours, loop, bound, lag in rows:
        sustained = loop_rate >= 0.9
        ratio = ours / loop
        if sustained:
            worst = ratio if worst is None else max(worst, ratio)
        verdict = ("ok" if ratio <= 1.10 else "OVER 10%") if sustained else "loop does not sustain this rate"
        if bound:
            verdict += "; bench warned: client-bound"
        print(f"{rate:>10g} {ours_rate:>15.2f} {loop_rate:>14.2f} {ours:>14.2f} {loop:>13.2f} {ratio:>6.3f} "
              f"{lag:>16.2f}  {verdict}")
    print(f"\nworst bench/loop TTFT ratio over the rates the loop sustains: {worst:.3f} (target <= 1.10)"
          if worst is not None else "\nthe loop sustained no rate")
    print(json.dumps({"worst_ratio": worst, "rows": [
        {"rate": r, "achieved_bench": a, "achieved_loop": b, "bench_ttft_ms": round(o, 2),
         "loop_ttft_ms": round(m, 2), "client_bound_warning": w, "bench_lag_p90_ms": g}
        for r, a, b, o, m, w, g in rows]}))


if __name__ == "__main__":
    main()
