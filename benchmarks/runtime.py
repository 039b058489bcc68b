"""Benchmark: decoding speed of the MindSpore CPU runtime vs Hugging Face transformers on CPU, same run.

    python benchmarks/runtime.py [--tokens 64] [--skip-100m]

Two models are generated on the fly (random weights, no download): the tiny test model and a ~100M-parameter
Llama-shaped one (hidden 768, 12 layers, vocab 32000). Both are built with `mindie-pack build` (tp 2, float32)
and timed on the same prompt with greedy decoding; the table shows prefill time and decode tokens/s.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.options import BuildOptions
from mindie_pack.runtime import GenerationParams, load_runtime
from mindie_pack.tiny_model import TinyModelSpec, make_tiny_model

PROMPT = "MindIE serves large language models on Ascend NPUs. Tensor parallelism splits each weight."


def time_ours(model_dir: Path, tokens: int) -> tuple[float, float]:
    runtime = load_runtime(model_dir)
    ids = runtime.encode(PROMPT)
    runtime.generate([ids], GenerationParams(max_new_tokens=2, ignore_eos=True))  # warm-up
    start = time.perf_counter()
    runtime.prompt_logits(ids)
    prefill = time.perf_counter() - start
    start = time.perf_counter()
    runtime.generate([ids], GenerationParams(max_new_tokens=tokens, ignore_eos=True))
    return prefill, tokens / (time.perf_counter() - start)


def time_transformers(hf_dir: Path, tokens: int) -> tuple[float, float]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig

    torch.set_num_threads(max(1, torch.get_num_threads()))
    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()
    model.generation_config.eos_token_id = None
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    config = GenerationConfig(max_new_tokens=tokens, do_sample=False, pad_token_id=0)
    with torch.no_grad():
        model.generate(ids, generation_config=GenerationConfig(max_new_tokens=2, do_sample=False, pad_token_id=0))
        start = time.perf_counter()
        model(ids)
        prefill = time.perf_counter() - start
        start = time.perf_counter()
        model.generate(ids, generation_config=config)
    return prefill, tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=64)
    parser.add_argument("--skip-100m", action="store_true")
    args = parser.parse_args()
    specs = [("tiny (0.1M)", TinyModelSpec(family="llama", dtype="float32"))]
    if not args.skip_100m:
        specs.append(("llama ~100M", TinyModelSpec(family="llama", dtype="float32", hidden_size=768, num_layers=12,
                                                   num_heads=12, num_kv_heads=4, intermediate_size=2048,
                                                   vocab_size=32000, max_position_embeddings=2048)))
    rows = []
    with tempfile.TemporaryDirectory(prefix="mindie-pack-rt-bench-") as tmp:
        for label, spec in specs:
            hf_dir = make_tiny_model(Path(tmp) / f"hf-{len(rows)}", spec)
            out = Path(tmp) / f"out-{len(rows)}"
            build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=2))
            ours = time_ours(out, args.tokens)
            theirs = time_transformers(hf_dir, args.tokens)
            rows.append((label, ours, theirs))
    print(f"\n{'model':<14} {'runtime':<28} {'prefill ms':>11} {'decode tok/s':>13}")
    for label, ours, theirs in rows:
        print(f"{label:<14} {'mindie-pack (MindSpore CPU)':<28} {ours[0] * 1000:>11.1f} {ours[1]:>13.1f}")
        print(f"{'':<14} {'transformers (torch CPU)':<28} {theirs[0] * 1000:>11.1f} {theirs[1]:>13.1f}")


if __name__ == "__main__":
    main()
