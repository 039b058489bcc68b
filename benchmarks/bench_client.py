"""Benchmark: is `mindie-pack bench` ever the bottleneck? Against the emulator's fake model (fixed prefill),
compare the TTFT bench measures with the TTFT a minimal hand-written httpx loop measures, at rising Poisson rates.

    python benchmarks/bench_client.py [--prefill-ms 50] [--seconds 4] [--rates 10,20,40,80,160]

Prints, per rate, the mean TTFT each client measures and the added TTFT: the excess over the floor (the
minimal loop's TTFT at the lowest rate = fake prefill + server and loopback overhead), and the highest rate
each client sustains with <= 1 ms added TTFT. Target: bench within 20% of the minimal loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from mindie_pack.client.bench import BenchConfig, run_load
from mindie_pack.client.target import Target

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))


async def minimal_loop(url: str, model: str, rate: float, count: int, output_len: int) -> list[float]:
    """The simplest correct measurement: Poisson arrivals, stream, time to the first content chunk."""
    rng = random.Random(0)
    ttfts: list[float] = []
    async with httpx.AsyncClient(timeout=60, limits=httpx.Limits(max_connections=None), trust_env=False) as client:
        async def one() -> None:
            start = time.perf_counter()
            payload = {"model": model, "messages": [{"role": "user", "content": "hello there"}],
                       "max_tokens": output_len, "stream": True}
            first = None
            async with client.stream("POST", f"{url}/v1/chat/completions", json=payload) as response:
                async for line in response.aiter_lines():
                    if first is None and line.startswith("data: ") and '"content": "' in line \
                            and '"content": ""' not in line:
                        first = (time.perf_counter() - start) * 1000
            if first is not None:
                ttfts.append(first)
        tasks, next_at = [], time.perf_counter()
        for _ in range(count):
            tasks.append(asyncio.create_task(one()))
            next_at += rng.expovariate(rate)
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
        await asyncio.gather(*tasks)
    return ttfts


def main() -> None:
    from mindie_pack.emulator.install import install_emulator

    from deploy_helpers import build_tiny, free_port_block
    from emulator_helpers import write_config_for

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--prefill-ms", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--rates", default="10,20,40,80,160,320")
    parser.add_argument("--output-len", type=int, default=4)
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
                config_b = BenchConfig(endpoint="openai-chat", concurrency=None, rate=rate, requests=count,
                                       output_len=args.output_len, warmup=2, input_len=2)
                records, _ = asyncio.run(run_load(target, config_b))
                ours = [r.ttft_ms for r in records if r.ok and r.ttft_ms is not None]
                loop = asyncio.run(minimal_loop(url, model, rate, count, args.output_len))
                rows.append((rate, sum(ours) / len(ours), sum(loop) / len(loop)))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    floor = rows[0][2]
    print(f"\nfake model prefill {args.prefill_ms:g} ms; floor (minimal loop at {rows[0][0]:g} req/s) {floor:.2f} ms")
    print(f"{'rate req/s':>10} {'bench TTFT ms':>14} {'added':>7} {'minimal loop TTFT ms':>21} {'added':>7}")
    for rate, ours, loop in rows:
        print(f"{rate:>10g} {ours:>14.2f} {ours - floor:>7.2f} {loop:>21.2f} {loop - floor:>7.2f}")
    best_ours = max((r for r, o, _ in rows if o - floor <= 1.0), default=None)
    best_loop = max((r for r, _, m in rows if m - floor <= 1.0), default=None)
    print(f"\nhighest rate with <= 1 ms added TTFT: bench {best_ours} req/s, minimal loop {best_loop} req/s")
    print(json.dumps({"bench": best_ours, "minimal_loop": best_loop}))


if __name__ == "__main__":
    main()
