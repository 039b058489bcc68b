"""Distributed-training strategy files and the per-tensor merge of rank slices, done by MindSpore's own code.

A MindFormers run writes `strategy/ckpt_strategy_rank_{i}.ckpt` (protobuf `ParallelStrategyMap`, or `.json`)
next to `checkpoint/rank_{i}/*.ckpt`. Each layout says how a parameter is cut: `dev_matrix` + `tensor_map`
(tensor parallel), `opt_weight_shard_step/size` (optimizer-parallel shards of dim 0), and, once the strategies
of all pipeline stages are merged, which stage holds it (mindspore-ckpt.md §3).

What MindSpore does and what we do:
- the strategies of all stages are merged with `mindspore.parallel.merge_pipeline_strategys` and parsed with
  MindSpore's own `_extract_layout_map` (the function `transform_checkpoints` uses);
- a tensor is put back together by `_transform_parallel_checkpoint`, the routine at the heart of
  `mindspore.transform_checkpoints`, called for ONE parameter with the slices of the ranks of its stage.
  `transform_checkpoints` itself loads every needed rank file whole (`load_checkpoint`) and writes a complete
  checkpoint; calling its core per tensor keeps memory at one tensor's slices plus the merged tensor.
MindSpore decides where each slice goes (on a one-element-per-slice proxy, see merge_slices); the bytes are only
copied, so the merge is bit-exact in any dtype.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mindie_pack.errors import PackError

STRATEGY_SUFFIXES = (".ckpt", ".json")


@dataclass(frozen=True)
class ParamLayout:
    dev_matrix: tuple[int, ...]
    tensor_map: tuple[Any, ...]
    opt_shard_step: int
    opt_shard_size: int
    stages: tuple[int, ...]
    raw: list[Any]  # MindSpore's own list form, handed back to its transform code

    def slice_shape(self, full_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape one rank holds, by MindSpore's rules (tensor map, then optimizer shard of dim 0)."""
        from mindspore.parallel._tensor import _extract_layout_item, _get_tensor_strategy

        _, _, _, opt_size = _extract_layout_item(self.raw)
        strategy = _get_tensor_strategy(list(self.dev_matrix), list(self.tensor_map))
        shape = [dim // int(split) for dim, split in zip(full_shape, strategy, strict=False)]
        if opt_size and opt_size > 0 and shape:
            shape[0] //= int(opt_size)
        return tuple(shape)

    def describe(self) -> str:
        text = f"dev_matrix {list(self.dev_matrix)}, tensor_map {list(self.tensor_map)}"
        if self.opt_shard_size:
            text += f", opt_weight_shard_size {self.opt_shard_size} step {self.opt_shard_step}"
        if len(self.stages) > 1 or self.stages != (0,):
            text += f", pipeline stage {self.stages[0]}"
        return text


@dataclass(frozen=True)
class Strategy:
    origin: Path  # the file or folder the user gave
    files: tuple[Path, ...]
    layouts: dict[str, ParamLayout]
    stage_device_num: int
    stage_num: int

    @property
    def device_num(self) -> int:
        return self.stage_device_num * self.stage_num

    def stage_ranks(self, stage: int) -> range:
        return range(stage * self.stage_device_num, (stage + 1) * self.stage_device_num)


def strategy_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise PackError(f"{path}: strategy file or folder not found")
    files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix in STRATEGY_SUFFIXES)
    if not files:
        raise PackError(f"{path}: no strategy files (*.ckpt or *.json, e.g. ckpt_strategy_rank_0.ckpt)")
    if len({p.suffix for p in files}) > 1:
        raise PackError(f"{path}: strategy files must be all .ckpt (protobuf) or all .json, not both")
    return files


def load_strategy(path: Path) -> Strategy:
    """Parse (and, for several pipeline stages, merge) strategy files with MindSpore's own functions."""
    import mindspore as ms
    from mindspore.parallel._parallel_serialization import _extract_layout_map

    files = strategy_files(path)
    with tempfile.TemporaryDirectory(prefix="mindie-pack-strategy-") as tmp:
        # merge_pipeline_strategys reads every *.ckpt/*.json of one folder: give it exactly the chosen files.
        src = Path(tmp) / "src"
        src.mkdir()
        for index, file in enumerate(files):
            shutil.copyfile(file, src / f"{index:05d}{file.suffix}")
        merged = Path(tmp) / f"merged{files[0].suffix}"
        try:
            ms.parallel.merge_pipeline_strategys(str(src), str(merged))
            raw_map = _extract_layout_map(str(merged))
        except Exception as exc:  # MindSpore raises ValueError/TypeError/DecodeError for foreign files
            raise PackError(f"{path}: not a MindSpore strategy file ({exc.__class__.__name__}: "
                            f"{str(exc).splitlines()[0] if str(exc) else 'unparseable'})") from None
    if not raw_map:
        raise PackError(f"{path}: the strategy has no parameter layouts (parallel_layout_item is empty)")
    layouts = {
        name: ParamLayout(tuple(item[0]), tuple(item[1]), int(item[4]), int(item[5]), tuple(sorted(item[6])), item)
        for name, item in raw_map.items()
    }
    stage_device_num = int(np.prod(next(iter(layouts.values())).dev_matrix))  # as MindSpore computes it
    stages = sorted({stage for layout in layouts.values() for stage in layout.stages})
    if stages != list(range(len(stages))):
        raise PackError(f"{path}: the strategy files cover pipeline stages {stages}; a stage is missing "
                        f"(expected 0..{max(stages)})")
    return Strategy(path, tuple(files), layouts, stage_device_num, len(stages))


def needed_ranks(name: str, layout: ParamLayout) -> list[int]:
    """The stage-local ranks whose slices make up the whole tensor (MindSpore's own rank-list computation:
    one copy of a replicated tensor, one slice per distinct piece of a split one)."""
    from mindspore.parallel._parallel_serialization import _rank_list_for_transform_parallel_checkpoint

    return sorted(_rank_list_for_transform_parallel_checkpoint(0, {name: layout.raw}, None))


def _mindspore_merge(name: str, layout: ParamLayout, slices: dict[int, np.ndarray]) -> np.ndarray:
    """MindSpore's own redistribution (the core of transform_checkpoints) for one parameter."""
    from mindspore.parallel._parallel_serialization import _transform_parallel_checkpoint

    params = _transform_parallel_checkpoint(
        0, {name: slices}, {name: {rank: (True, False) for rank in slices}}, {name: layout.raw}, None,
        {name: {rank: "raw" for rank in slices}},
    )
    return params[0]["data"].asnumpy()


def merge_slices(name: str, layout: ParamLayout, slices: dict[int, np.ndarray]) -> np.ndarray:
    """Put one parameter together from its stage-local rank slices ({local rank: raw array}).

    Which rank's slice goes where is decided by MindSpore's redistribution code, run on a proxy tensor with one
    element per slice (its value: the rank that holds it). The real slices are then copied into place, so memory
    is the slices plus the result, instead of the several intermediate copies MindSpore's own concatenation of
    the real data makes. Layouts whose slices are not plain blocks (multi-axis tensor maps) and scalars go through
    MindSpore's code with the real data.
    """
    first = next(iter(slices.values()))
    block = first.shape
    full = expected_full_shape(layout, block)
    plain = first.ndim > 0 and not any(isinstance(t, (list, tuple)) for t in layout.tensor_map) and \
        all(s.shape == block for s in slices.values()) and all(f % b == 0 for f, b in zip(full, block, strict=True))
    if not plain:
        # Raw bit patterns through MindSpore: 2-byte floats as uint16 (slicing/concatenation only, bit-exact).
        feed = {rank: a.view(np.uint16) if a.dtype.itemsize == 2 and a.dtype.kind == "f" else a
                for rank, a in slices.items()}
        merged = _mindspore_merge(name, layout, feed)
        return merged.view(first.dtype) if merged.dtype.itemsize == first.dtype.itemsize else merged
    proxies = {rank: np.full((1,) * first.ndim, rank, dtype=np.int32) for rank in slices}
    owners = _mindspore_merge(name, layout, proxies)
    grid = tuple(f // b for f, b in zip(full, block, strict=True))
    if owners.shape != grid:
        raise ValueError(f"layout maps {len(slices)} slices of {list(block)} to {list(owners.shape)} blocks, "
                         f"expected {list(grid)}")
    if owners.size == 1:  # one slice is the whole tensor (replicated): no copy
        return slices[int(owners.reshape(-1)[0])]
    out = np.empty(full, dtype=first.dtype)
    for index in np.ndindex(*grid):
        region = tuple(slice(i * b, (i + 1) * b) for i, b in zip(index, block, strict=True))
        out[region] = slices[int(owners[index])]
    return out


def expected_full_shape(layout: ParamLayout, slice_shape: tuple[int, ...]) -> tuple[int, ...]:
    from mindspore.parallel._tensor import _extract_layout_item, _get_tensor_strategy

    _, _, _, opt_size = _extract_layout_item(layout.raw)
    strategy = _get_tensor_strategy(list(layout.dev_matrix), list(layout.tensor_map))
    shape = [dim * int(split) for dim, split in zip(slice_shape, strategy, strict=False)]
    if opt_size and opt_size > 0 and shape:
        shape[0] *= int(opt_size)
    return tuple(shape)


def layout_devices(layout: ParamLayout) -> int:
    return math.prod(layout.dev_matrix)
