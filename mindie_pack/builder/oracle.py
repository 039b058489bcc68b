"""`verify --reference`'s independent oracle: what each stored tensor must be, worked out WITHOUT the build's
rules (mindie_pack.models' tensor plans, mindie_pack.weights' reader and casts).

- Names: MindFormers' legacy Llama layout, written here from its layer semantics (mindspore-ckpt.md §4):
  attention wq/wk/wv and feed_forward w1/w3 are column-parallel (output features split, dim 0), wo and w2
  row-parallel (input features split, dim 1), norms replicated, embedding/lm_head vocab-parallel when their
  stored rows are fewer than the vocabulary; Baichuan's fused W_pack is cut in three with torch.chunk.
- Reading: the reference goes through the safetensors library (or torch.load for .bin), a reader other
  than the build's.
- Casts: torch's `Tensor.to` (round to nearest even, NaN kept, overflow to inf; saturated when the build was
  run with --clamp).
- Splits: torch.chunk on the dimension the parallel style names.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindie_pack.errors import PackError

_L = r"model\.layers\.(\d+)\."
# (MindFormers name pattern, HF name template, parallel style)
_RULES: list[tuple[str, str, str]] = [
    (r"model\.tok_embeddings\.embedding_weight", "model.embed_tokens.weight", "vocab"),
    (r"model\.norm_out\.weight", "model.norm.weight", "replicated"),
    (r"lm_head\.weight", "lm_head.weight", "vocab"),
    (_L + r"attention\.w([qkv])\.(weight|bias)", r"model.layers.\1.self_attn.\2_proj.\3", "column"),
    (_L + r"attention\.wo\.weight", r"model.layers.\1.self_attn.o_proj.weight", "row"),
    (_L + r"feed_forward\.w1\.weight", r"model.layers.\1.mlp.gate_proj.weight", "column"),
    (_L + r"feed_forward\.w3\.weight", r"model.layers.\1.mlp.up_proj.weight", "column"),
    (_L + r"feed_forward\.w2\.weight", r"model.layers.\1.mlp.down_proj.weight", "row"),
    (_L + r"attention_norm\.weight", r"model.layers.\1.input_layernorm.weight", "replicated"),
    (_L + r"ffn_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight", "replicated"),
]
_FUSED_QKV = re.compile(_L + r"attention\.w([qkv])\.weight")

TORCH_DTYPES = {"Float32": "float32", "Float16": "float16", "BFloat16": "bfloat16", "Float64": "float64"}


@dataclass(frozen=True)
class Expected:
    """Where a stored tensor comes from: an HF tensor (optionally one of `parts` equal row chunks of it),
    and the dimension its ranks split (None: every rank holds all of it)."""

    source: str
    split_dim: int | None
    part: int = 0
    parts: int = 1
    vocab: bool = False  # vocab-parallel: split on dim 0 only when the ranks hold fewer rows than the source


class Reference:
    """The HF reference folder read through the safetensors library (torch for .bin)."""

    def __init__(self, path: Path) -> None:
        import importlib.util

        if importlib.util.find_spec("torch") is None:
            raise PackError("verify --reference: the independent oracle reads and casts the reference with torch, "
                            "which is not installed: pip install 'mindie-pack[verify]' (or torch)")
        self.path = path
        self.files: dict[str, Path] = {}
        self._bin: dict[Path, dict[str, Any]] = {}
        index = path / "model.safetensors.index.json"
        if index.is_file():
            weight_map = json.loads(index.read_text())["weight_map"]
            self.files = {name: path / file for name, file in weight_map.items()}
        else:
            from safetensors import safe_open

            for file in sorted(path.glob("*.safetensors")):
                with safe_open(str(file), framework="pt") as handle:
                    self.files.update({name: file for name in handle.keys()})  # noqa: SIM118 - not a dict
        if not self.files:
            import torch

            for file in sorted(path.glob("pytorch_model*.bin")):
                state = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
                self._bin[file] = state
                self.files.update({name: file for name in state})
        if not self.files:
            raise PackError(f"{path}: no safetensors or pytorch_model*.bin weights to compare against")

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def shape(self, name: str) -> tuple[int, ...]:
        file = self.files[name]
        if file in self._bin:
            return tuple(self._bin[file][name].shape)
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            return tuple(handle.get_slice(name).get_shape())

    def rows(self, name: str, start: int, end: int) -> Any:  # -> torch.Tensor
        """Rows [start, end) as a torch tensor. The file is opened per call so that its memory map (and the
        pages it touched) is released at once: memory stays flat whatever the model size."""
        file = self.files[name]
        if file in self._bin:
            tensor = self._bin[file][name]
            return (tensor[start:end] if tensor.dim() else tensor).clone()
        from safetensors import safe_open

        with safe_open(str(file), framework="pt") as handle:
            piece = handle.get_slice(name)
            if not piece.get_shape():
                return handle.get_tensor(name)
            return piece[start:end]


def expected_for(target: str, reference: Reference) -> Expected:
    for pattern, template, style in _RULES:
        match = re.fullmatch(pattern, target)
        if match is None:
            continue
        source = match.expand(template)
        if source not in reference:
            fused = _FUSED_QKV.fullmatch(target)
            w_pack = f"model.layers.{fused.group(1)}.self_attn.W_pack.weight" if fused else ""
            if fused and w_pack in reference:
                return Expected(w_pack, 0, "qkv".index(fused.group(2)), 3)
            raise PackError(f"{reference.path}: has no tensor {source!r} for {target!r}")
        split = {"column": 0, "row": 1, "replicated": None, "vocab": 0}[style]
        return Expected(source, split, vocab=style == "vocab")
    raise PackError(f"{target!r}: the verifier has no independent rule for this tensor name")


def torch_cast(tensor: Any, type_str: str, *, clamp: bool) -> Any:
    import torch

    dtype = getattr(torch, TORCH_DTYPES[type_str])
    if clamp and tensor.is_floating_point() and dtype in (torch.float16, torch.bfloat16, torch.float32):
        limit = torch.finfo(dtype).max
        wide = tensor.to(torch.float64)
        finite = torch.isfinite(wide)
        tensor = torch.where(finite, wide.clamp(-limit, limit), wide)
    return tensor.to(dtype)


def rank_part(block: Any, split_dim: int | None, tp: int, rank: int) -> Any:
    """Rank `rank`'s columns of a block of rows (split_dim 1), or the whole block."""
    import torch

    if split_dim is None or split_dim == 0 or tp == 1:
        return block
    return torch.chunk(block, tp, dim=split_dim)[rank].contiguous()


def raw_bytes(tensor: Any) -> memoryview:
    import torch

    flat = tensor.contiguous().reshape(-1)
    if flat.dtype in (torch.bfloat16, torch.float16):
        flat = flat.view(torch.int16)
    return memoryview(flat.numpy()).cast("B")


def row_blocks(start: int, end: int, row_bytes: int, step_bytes: int) -> Iterator[tuple[int, int]]:
    step = max(1, step_bytes // max(1, row_bytes))
    for row in range(start, end, step):
        yield row, min(row + step, end)
