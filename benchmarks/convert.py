"""Benchmark: streaming `mindie-pack build --tp 2` vs a plain copy vs the load-everything approach.

Generates Llama-shaped bfloat16 models on the fly (no download): a base model of >= 1.5 GB and, for the
memory-scaling check, one 3x larger with the same largest tensor (more layers). Each contender runs in its own
subprocess; wall time and that process's peak RSS (os.wait4 rusage) are printed side by side. The parent
imports nothing heavy and generates models in a child too: a child's peak RSS includes its parent's RSS at
fork time, so a large parent would inflate every figure.

    python benchmarks/convert.py [--workdir DIR] [--skip-large] [--keep]

Targets (issue 2): peak RSS independent of model size (<= 200 MB more for the 3x model), build time <= 3x a
plain copy of the same bytes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SHARD_BYTES = 1 << 30


@dataclass(frozen=True)
class Shape:
    layers: int
    hidden: int = 2048
    intermediate: int = 5504
    heads: int = 16
    vocab: int = 32000

    def tensors(self) -> list[tuple[str, tuple[int, ...]]]:
        h, f = self.hidden, self.intermediate
        out: list[tuple[str, tuple[int, ...]]] = [("model.embed_tokens.weight", (self.vocab, h))]
        for i in range(self.layers):
            p = f"model.layers.{i}."
            out += [(p + "self_attn.q_proj.weight", (h, h)), (p + "self_attn.k_proj.weight", (h, h)),
                    (p + "self_attn.v_proj.weight", (h, h)), (p + "self_attn.o_proj.weight", (h, h)),
                    (p + "mlp.gate_proj.weight", (f, h)), (p + "mlp.up_proj.weight", (f, h)),
                    (p + "mlp.down_proj.weight", (h, f)), (p + "input_layernorm.weight", (h,)),
                    (p + "post_attention_layernorm.weight", (h,))]
        return out + [("model.norm.weight", (h,)), ("lm_head.weight", (self.vocab, h))]


def _bf16_block(count: int, rng: Any) -> bytes:  # rng: numpy Generator
    # Small random normal values as bf16 bit patterns (the top 16 bits of float32).
    import numpy as np

    values = rng.standard_normal(count, dtype=np.float32) * 0.02
    return (values.view(np.uint32) >> 16).astype(np.uint16).tobytes()


def write_model(out: Path, shape: Shape) -> int:
    """Write sharded bf16 safetensors tensor by tensor, so generating the model needs little memory either."""
    import numpy as np

    from mindie_pack.tiny_model import write_tokenizer

    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, dims in shape.tensors():
        nbytes = math.prod(dims) * 2
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, dims))
        size += nbytes
    weight_map, total = {}, 0
    for index, members in enumerate(shards, start=1):
        file_name = f"model-{index:05d}-of-{len(shards):05d}.safetensors"
        header, offset = {}, 0
        for name, dims in members:
            nbytes = math.prod(dims) * 2
            header[name] = {"dtype": "BF16", "shape": list(dims), "data_offsets": [offset, offset + nbytes]}
            offset += nbytes
            weight_map[name] = file_name
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)
        with (out / file_name).open("wb") as handle:
            handle.write(len(raw).to_bytes(8, "little") + raw)
            for _, dims in members:
                remaining = math.prod(dims)
                while remaining:
                    count = min(remaining, 1 << 24)
                    handle.write(_bf16_block(count, rng))
                    remaining -= count
        total += offset
    (out / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": total},
                                                                  "weight_map": weight_map}))
    (out / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": shape.hidden,
        "intermediate_size": shape.intermediate, "num_hidden_layers": shape.layers,
        "num_attention_heads": shape.heads, "num_key_value_heads": shape.heads, "vocab_size": shape.vocab,
        "max_position_embeddings": 4096, "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "torch_dtype": "bfloat16",
        "tie_word_embeddings": False, "bos_token_id": 1, "eos_token_id": 2,
    }))
    write_tokenizer(out, 384)
    return total


LOAD_EVERYTHING = textwrap.dedent("""
    # The usual ad-hoc script: load the whole state dict, convert every tensor, split, save per rank.
    import sys, glob, os
    import torch, mindspore as ms
    from safetensors.torch import load_file
    src, dst, tp = sys.argv[1], sys.argv[2], int(sys.argv[3])
    state = {}
    for f in sorted(glob.glob(os.path.join(src, "*.safetensors"))):
        state.update(load_file(f))
    names = {"q_proj": ("attention.wq", 0), "k_proj": ("attention.wk", 0), "v_proj": ("attention.wv", 0),
             "o_proj": ("attention.wo", 1), "gate_proj": ("feed_forward.w1", 0), "up_proj": ("feed_forward.w3", 0),
             "down_proj": ("feed_forward.w2", 1)}
    converted = {}
    for name, tensor in state.items():
        axis = None
        for hf, (mf, ax) in names.items():
            if hf in name:
                name = name.replace("self_attn." + hf, mf).replace("mlp." + hf, mf)
                axis = ax
        converted[name] = (ms.Tensor(tensor.float().numpy()).astype(ms.bfloat16), axis)
    for rank in range(tp):
        out = os.path.join(dst, f"rank_{rank}")
        os.makedirs(out, exist_ok=True)
        params = []
        for name, (tensor, axis) in converted.items():
            if axis is not None:
                tensor = ms.ops.chunk(tensor, tp, axis)[rank]
            params.append({"name": name, "data": tensor})
        ms.save_checkpoint(params, os.path.join(out, f"checkpoint_{rank}.ckpt"))
""")

COPY = "import shutil, sys; shutil.copytree(sys.argv[1], sys.argv[2])"


def measure(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one child process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:4])}... failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return elapsed, usage.ru_maxrss / 1024


def drop(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--base-layers", type=int, default=16, help="16 layers of hidden 2048 = 1.9 GB bf16")
    parser.add_argument("--skip-large", action="store_true", help="skip the 3x model (needs ~2x5 GB disk)")
    parser.add_argument("--skip-load-everything", action="store_true")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)  # child mode: write one model
    parser.add_argument("--layers", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        print(write_model(args.generate, Shape(layers=args.layers)))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mindie-pack-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    pack = [sys.executable, "-m", "mindie_pack"]
    rows: list[tuple[str, float, float, float]] = []
    try:
        base = Shape(layers=args.base_layers)
        models = [("base", base)] + ([] if args.skip_large else [("3x", Shape(layers=args.base_layers * 3 + 2))])
        for label, shape in models:
            src = work / f"hf-{label}"
            drop(src)
            size = int(subprocess.run([sys.executable, __file__, "--generate", str(src), "--layers", str(shape.layers)],
                                      check=True, capture_output=True, text=True).stdout.split()[-1])
            gb = size / 1e9
            print(f"[{label}] model: {shape.layers} layers, {gb:.2f} GB bf16, largest tensor "
                  f"{shape.vocab}x{shape.hidden}", flush=True)
            t, rss = measure([sys.executable, "-c", COPY, str(src), str(work / "copy")])
            rows.append((f"{label}: plain copy", gb, t, rss))
            drop(work / "copy")
            t, rss = measure(pack + ["build", "--model", str(src), "--output", str(work / "out"), "--tp", "2",
                                     "--json"])
            rows.append((f"{label}: mindie-pack build --tp 2", gb, t, rss))
            drop(work / "out")
            if label == "base" and not args.skip_load_everything:
                t, rss = measure([sys.executable, "-c", LOAD_EVERYTHING, str(src), str(work / "naive"), "2"])
                rows.append((f"{label}: load everything + ms.save_checkpoint", gb, t, rss))
                drop(work / "naive")
            drop(src)
    finally:
        if not args.keep and args.workdir is None:
            drop(work)
    print()
    print(f"{'contender':<48} {'GB':>6} {'wall s':>8} {'GB/s':>7} {'peak RSS MiB':>13}")
    for name, gb, t, rss in rows:
        print(f"{name:<48} {gb:>6.2f} {t:>8.2f} {gb / t:>7.2f} {rss:>13.0f}")
    by = {name: (t, rss) for name, _, t, rss in rows}
    build_t, build_rss = by["base: mindie-pack build --tp 2"]
    print(f"\nbuild time / plain copy time (base): {build_t / by['base: plain copy'][0]:.2f}x  (target <= 3x)")
    if "3x: mindie-pack build --tp 2" in by:
        growth = by["3x: mindie-pack build --tp 2"][1] - build_rss
        print(f"peak RSS growth for the 3x model: {growth:+.0f} MiB  (target <= 200 MiB)")


if __name__ == "__main__":
    main()
