"""Benchmark: `mindie-pack build` (tp 1 and tp 2, same dtype; and a cast) and `verify --reference` against
`cp -r SRC DST && sync` of the same bytes, in the same run, several rounds, medians.

Generates Llama-shaped bfloat16 models on the fly (no download). Each contender runs in its own subprocess;
wall time and that process's peak RSS (os.wait4 rusage, children included for cp) are printed. Before each
contender: `sync` (with `--cold` also every model file dropped from the page cache). `build`
returns only when its files are on disk (fdatasync), so it is compared with `cp -r && sync`. The parent
imports nothing heavy and generates models in a child too: a child's peak RSS includes its parent's RSS at
fork time, so a large parent would inflate every figure.

    python benchmarks/convert.py [--rounds 3] [--workdir DIR] [--skip-large] [--keep] [--cold]
    python benchmarks/convert.py --llama-7b --workdir /tmp/x   # Llama-2-7B shapes, ~13.5 GB: tp 1 and tp 4

Targets (issue 13): build <= 1.5x `cp -r && sync` at tp 1 and tp 2; peak RSS <= 256 MiB at any model size
(the 3x model shows the growth); verify --reference <= 1.5x the build, with flat memory.
On a shared machine the wall times move with other people's load: read the medians and the spread.
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


_POOL: Any = None


LLAMA2_7B = Shape(layers=32, hidden=4096, intermediate=11008, heads=32, vocab=32000)

def _bf16_block(count: int, rng: Any) -> bytes:  # rng: numpy Generator
    """Small normal values as bf16 bit patterns (the top 16 bits of float32): a window at a random offset of
    a 32M-value pool drawn once, so that generating 13 GB costs I/O rather than minutes of RNG."""
    import numpy as np

    global _POOL
    if _POOL is None:
        values = rng.standard_normal(1 << 25, dtype=np.float32) * 0.02
        _POOL = np.concatenate([(values.view(np.uint32) >> 16).astype(np.uint16)] * 2)
    start = int(rng.integers(0, 1 << 25))
    return _POOL[start:start + count].tobytes()


def write_model(out: Path, shape: Shape, shard_bytes: int = SHARD_BYTES) -> int:
    """Write sharded bf16 safetensors tensor by tensor, so generating the model needs little memory either."""
    import numpy as np

    from mindie_pack.tiny_model import write_tokenizer

    out.mkdir(parents=True)
    rng = np.random.default_rng(0)
    shards: list[list[tuple[str, tuple[int, ...]]]] = [[]]
    size = 0
    for name, dims in shape.tensors():
        nbytes = math.prod(dims) * 2
        if shards[-1] and size + nbytes > shard_bytes:
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
                    count = min(remaining, 1 << 23)
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



def measure(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, float, float, float]:
    """Wall seconds, user and system CPU seconds, and peak RSS (MiB) of one child process (and its children)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd[:6])}... failed: {proc.stderr.read().decode()[-2000:] if proc.stderr else ''}")
    return elapsed, usage.ru_utime, usage.ru_stime, usage.ru_maxrss / 1024


def evict(root: Path) -> None:
    """Drop the (clean, after `sync`) page-cache pages of every file under `root` (POSIX_FADV_DONTNEED)."""
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            finally:
                os.close(fd)


def drop(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def generate(path: Path, shape: Shape, shard_bytes: int = SHARD_BYTES) -> int:
    drop(path)
    out = subprocess.run([sys.executable, __file__, "--generate", str(path), "--layers", str(shape.layers),
                          "--hidden", str(shape.hidden), "--intermediate", str(shape.intermediate),
                          "--heads", str(shape.heads), "--vocab", str(shape.vocab), "--shard-bytes", str(shard_bytes)],
                         check=True, capture_output=True, text=True).stdout
    return int(out.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--base-layers", type=int, default=16, help="16 layers of hidden 2048 = 1.9 GB bf16")
    parser.add_argument("--skip-large", action="store_true", help="skip the 3x model (memory scaling)")
    parser.add_argument("--skip-cast", action="store_true")
    parser.add_argument("--llama-7b", action="store_true", help="Llama-2-7B shapes (13.5 GB): tp 1 and tp 4")
    parser.add_argument("--source", type=Path, help="with --llama-7b: an already generated model folder (kept)")
    parser.add_argument("--load-everything", action="store_true", help="also time the load-everything script")
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--cold", action="store_true",
                        help="drop every model file from the page cache before each contender (default: the "
                             "natural order, so verify finds the reference the build just read)")
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)  # child mode: write one model
    for name in ("layers", "hidden", "intermediate", "heads", "vocab", "shard-bytes"):
        parser.add_argument(f"--{name}", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        shape = Shape(args.layers, args.hidden, args.intermediate, args.heads, args.vocab)
        print(write_model(args.generate, shape, args.shard_bytes))
        return
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mindie-pack-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    pack = [sys.executable, "-m", "mindie_pack"]
    times: dict[str, list[tuple[float, float, float, float]]] = {}
    sizes: dict[str, float] = {}
    written: dict[str, float] = {}  # GB of weights a build wrote (tp > 1 replicates the vocabulary embedding)

    def run(label: str, cmd: list[str], gb: float) -> None:
        subprocess.run(["sync"], check=True)  # start every contender with no one else's dirty data
        if args.cold:  # ... and with every file it reads on disk (as for a model larger than the page cache)
            for root in {work, args.source or work}:
                evict(root)
        result = measure(cmd)
        times.setdefault(label, []).append(result)
        sizes[label] = gb
        print(f"  {label:<36} {result[0]:7.2f} s  user {result[1]:6.2f}  sys {result[2]:6.2f}  "
              f"peak RSS {result[3]:6.0f} MiB", flush=True)

    try:
        if args.llama_7b:
            models = [("7b", LLAMA2_7B, [1, 4], 5 * SHARD_BYTES)]
        else:
            base = Shape(layers=args.base_layers)
            models = [("base", base, [1, 2], SHARD_BYTES)]
            if not args.skip_large:
                models.append(("3x", Shape(layers=args.base_layers * 3 + 2), [2], SHARD_BYTES))
        for label, shape, tps, shard_bytes in models:
            src = work / f"hf-{label}"
            if args.source is not None and label == "7b":
                src = args.source
                size = int(json.loads((src / "model.safetensors.index.json").read_text())["metadata"]["total_size"])
            else:
                size = generate(src, shape, shard_bytes)
            gb = size / 1e9
            print(f"[{label}] model: {shape.layers} layers, hidden {shape.hidden}, {gb:.2f} GB bf16", flush=True)
            rounds = args.rounds if label != "3x" else 1
            for round_index in range(rounds):
                print(f" round {round_index + 1}/{rounds}", flush=True)
                run(f"{label}: cp -r && sync", ["sh", "-c", f"cp -r '{src}' '{work / 'copy'}' && sync"], gb)
                drop(work / "copy")
                for tp in tps:
                    out = work / f"out-tp{tp}"
                    run(f"{label}: build --tp {tp}", pack + ["build", "--model", str(src), "--output", str(out),
                                                             "--tp", str(tp), "--json"], gb)
                    written[f"{label}: build --tp {tp}"] = sum(
                        f.stat().st_size for f in (out / "weights").rglob("*") if f.is_file()) / 1e9
                    if label != "3x" or tp == tps[-1]:
                        run(f"{label}: verify --reference (tp {tp})",
                            pack + ["verify", str(out), "--reference", str(src), "--json"], gb)
                    drop(out)
                if label == "base" and not args.skip_cast:
                    out = work / "out-f16"
                    run(f"{label}: build --dtype float16 (cast)", pack + [
                        "build", "--model", str(src), "--output", str(out), "--dtype", "float16", "--json"], gb)
                    drop(out)
            if label == "base" and args.load_everything:
                run(f"{label}: load everything + ms.save_checkpoint",
                    [sys.executable, "-c", LOAD_EVERYTHING, str(src), str(work / "naive"), "2"], gb)
                drop(work / "naive")
            if src != args.source:
                drop(src)
    finally:
        if not args.keep and args.workdir is None:
            drop(work)
    print()
    print(f"{'contender (median of rounds)':<44} {'GB':>6} {'wall s':>8} {'spread s':>13} {'MB/s':>7} "
          f"{'user s':>7} {'sys s':>6} {'peak RSS MiB':>13}")
    for name, results in times.items():
        walls = [r[0] for r in results]
        wall = median(walls)
        print(f"{name:<44} {sizes[name]:>6.2f} {wall:>8.2f} {min(walls):>6.2f}-{max(walls):<6.2f} "
              f"{sizes[name] * 1000 / wall:>7.0f} {median([r[1] for r in results]):>7.2f} "
              f"{median([r[2] for r in results]):>6.2f} {max(r[3] for r in results):>13.0f}")
    print()
    for label in ("base", "7b"):
        copy = times.get(f"{label}: cp -r && sync")
        if not copy:
            continue
        for name, results in times.items():
            if name.startswith(f"{label}: build --tp"):
                ratios = [r[0] / c[0] for r, c in zip(results, copy, strict=False)]
                print(f"{name} / cp -r && sync: median {median(ratios):.2f}x per round "
                      f"({', '.join(f'{x:.2f}' for x in ratios)})  (target <= 1.5x)")
            if name.startswith(f"{label}: verify"):
                tp = name.split("tp ")[1].rstrip(")")
                build = times.get(f"{label}: build --tp {tp}")
                if build:
                    ratios = [r[0] / b[0] for r, b in zip(results, build, strict=False)]
                    print(f"{name} / build --tp {tp}: median {median(ratios):.2f}x per round "
                          f"({', '.join(f'{x:.2f}' for x in ratios)})  (target <= 1.5x)")
    for name, gb in written.items():
        print(f"{name} wrote {gb:.2f} GB of weights ({sizes[name]:.2f} GB read)")
    if "3x: build --tp 2" in times:
        growth = times["3x: build --tp 2"][0][3] - max(r[3] for r in times["base: build --tp 2"])
        print(f"peak RSS growth of build for the 3x model: {growth:+.0f} MiB  (target: flat, <= 256 MiB in all)")
        vgrowth = times["3x: verify --reference (tp 2)"][0][3] - times["base: verify --reference (tp 2)"][0][3]
        print(f"peak RSS growth of verify for the 3x model: {vgrowth:+.0f} MiB  (target: flat)")


if __name__ == "__main__":
    main()
