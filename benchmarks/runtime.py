"""Benchmark: decode speed of the CPU runtime (numpy, tensor-parallel ranks) vs Hugging Face transformers (torch
CPU), same run, same prompt, greedy.

    python benchmarks/runtime.py [--tokens 64] [--rounds 3] [--tp 1 2] [--skip-100m] [--threads N]

Models are generated on the fly (random weights, no download): the tiny test model and a ~100M-parameter
Llama (hidden 768, 12 layers, 12 heads / 4 KV heads, ffn 2048, vocab 32000, float32). Each is built with
`mindie-pack build` at every --tp (mf-ckpt, each rank computing with its own rank file) and run by our runtime;
transformers runs the HF folder. Decode tokens/s = (N - 1) / (time of N new tokens - time of 1 new token), so
prefill is excluded the same way for both; rounds alternate between the two and the medians are compared.
The greedy tokens of both are checked equal.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __name__ == "__main__" and "--threads" in sys.argv:  # BLAS thread pools are sized when numpy/torch load
    _threads = sys.argv[sys.argv.index("--threads") + 1]
    for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[_name] = _threads

from mindie_pack.builder.assemble import build_model_dir  # noqa: E402
from mindie_pack.builder.options import BuildOptions  # noqa: E402
from mindie_pack.runtime import GenerationParams, load_runtime  # noqa: E402
from mindie_pack.tiny_model import TinyModelSpec, make_tiny_model  # noqa: E402

PROMPT = "MindIE serves large language models on Ascend NPUs. Tensor parallelism splits each weight."
LLAMA_100M = TinyModelSpec(family="llama", dtype="float32", hidden_size=768, num_layers=12, num_heads=12,
                           num_kv_heads=4, intermediate_size=2048, vocab_size=32000, max_position_embeddings=2048)


def _timed(run: Callable[[int], list[int]], tokens: int) -> tuple[float, float, list[int]]:
    """(prefill + 1 token seconds, decode tokens/s, the N greedy tokens)."""
    start = time.perf_counter()
    run(1)
    one = time.perf_counter() - start
    start = time.perf_counter()
    ids = run(tokens)
    full = time.perf_counter() - start
    return one, (tokens - 1) / max(full - one, 1e-9), ids


def ours(model_dir: Path) -> Callable[[int], list[int]]:
    runtime = load_runtime(model_dir)
    ids = runtime.encode(PROMPT)

    def run(n: int) -> list[int]:
        return runtime.generate([ids], GenerationParams(max_new_tokens=n, ignore_eos=True))[0].token_ids

    run(2)  # warm-up
    return run


def transformers_run(hf_dir: Path) -> Callable[[int], list[int]]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids

    def run(n: int) -> list[int]:
        config = GenerationConfig(max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=0)
        with torch.no_grad():
            return model.generate(ids, generation_config=config)[0, ids.shape[1]:].tolist()

    run(2)  # warm-up
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--tp", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--skip-100m", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/OpenMP threads for both (default: the libraries' own choice, all cores)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    specs = [("tiny (0.1M)", TinyModelSpec(family="llama", dtype="float32"))]
    if not args.skip_100m:
        specs.append(("llama ~100M", LLAMA_100M))
    print(f"torch threads {torch.get_num_threads()}; {args.tokens} new tokens; {args.rounds} rounds (medians)")
    header = f"{'model':<13} {'tp':>2} {'ours tok/s':>11} {'transformers tok/s':>19} {'ratio':>6} {'tokens equal':>13}"
    rows = []
    with tempfile.TemporaryDirectory(prefix="mindie-pack-rt-bench-") as tmp:
        for index, (label, spec) in enumerate(specs):
            hf_dir = make_tiny_model(Path(tmp) / f"hf-{index}", spec)
            theirs_run = transformers_run(hf_dir)
            for tp in args.tp:
                out = Path(tmp) / f"out-{index}-tp{tp}"
                build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=tp))
                ours_run = ours(out)
                mine, theirs = [], []
                equal = True
                for _ in range(args.rounds):
                    _, rate, ids = _timed(ours_run, args.tokens)
                    mine.append(rate)
                    _, rate, ref = _timed(theirs_run, args.tokens)
                    theirs.append(rate)
                    equal = equal and ids == ref
                row = (label, tp, statistics.median(mine), statistics.median(theirs), equal)
                rows.append(row)
                print(f"  {label} tp {tp}: ours {[round(r, 1) for r in mine]}, transformers "
                      f"{[round(r, 1) for r in theirs]}", flush=True)
                del ours_run
    print()
    print(header)
    for label, tp, mine_rate, theirs_rate, equal in rows:
        print(f"{label:<13} {tp:>2} {mine_rate:>11.1f} {theirs_rate:>19.1f} {mine_rate / theirs_rate:>6.2f} "
              f"{'yes' if equal else 'NO':>13}")


if __name__ == "__main__":
    main()
