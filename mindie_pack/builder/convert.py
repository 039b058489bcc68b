"""Check HF tensors against the family's plan, then stream them into one .ckpt per tensor-parallel rank."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mindie_pack.errors import PackError
from mindie_pack.models import ModelDims, ModelFamily, TensorSpec
from mindie_pack.weights.ckpt_format import CkptWriter
from mindie_pack.weights.dtypes import RawTensor, cast
from mindie_pack.weights.hf_source import HFWeights

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class RankFile:
    rank: int
    path: Path
    size: int
    sha256: str


def rank_file_path(weights_dir: Path, rank: int) -> Path:
    return weights_dir / f"rank_{rank}" / f"checkpoint_{rank}.ckpt"


def check_sources(weights: HFWeights, specs: list[TensorSpec], family: ModelFamily, dims: ModelDims) -> None:
    """Refuse, before writing anything, a checkpoint that does not match config.json."""
    expected: dict[str, tuple[int, ...]] = {}
    for spec in specs:
        expected.setdefault(spec.source, spec.expected_source_shape)
    for name, shape in expected.items():
        if name not in weights:
            raise PackError(
                f"{weights.model_dir}: tensor {name!r} is missing from the weights "
                f"(expected shape {list(shape)} from config.json)"
            )
        entry = weights.entries[name]
        if entry.shape != shape:
            raise PackError(
                f"{entry.file}: tensor {name!r} has shape {list(entry.shape)}, expected {list(shape)} from "
                f"config.json (hidden_size={dims.hidden_size}, num_attention_heads={dims.num_heads}, "
                f"num_key_value_heads={dims.num_kv_heads}, intermediate_size={dims.intermediate_size}, "
                f"vocab_size={dims.vocab_size})"
            )
        if not entry.dtype.is_float:
            raise PackError(f"{entry.file}: tensor {name!r} has dtype {entry.dtype.info.name}, expected a float type")
    for entry in weights.iter_entries():
        if entry.name not in expected and not family.is_ignored_source(entry.name, dims):
            raise PackError(
                f"{entry.file}: unexpected tensor {entry.name!r} (not part of a {family.description} model "
                f"with num_hidden_layers={dims.num_layers})"
            )


def source_bytes(weights: HFWeights, specs: list[TensorSpec]) -> int:
    return sum(weights.entries[name].nbytes for name in dict.fromkeys(spec.source for spec in specs))


def rank_slices(tensor: RawTensor, spec: TensorSpec, tp: int) -> list[RawTensor]:
    """Contiguous equal chunks along the split axis, rank r taking chunk r (np.split semantics)."""
    if spec.split_axis is None:
        return [tensor] * tp
    size = tensor.array.shape[spec.split_axis] // tp
    slices = []
    for rank in range(tp):
        index = [slice(None)] * tensor.array.ndim
        index[spec.split_axis] = slice(rank * size, (rank + 1) * size)
        slices.append(RawTensor(tensor.dtype, tensor.array[tuple(index)]))
    return slices


def convert_to_ranks(
    weights: HFWeights,
    specs: list[TensorSpec],
    tp: int,
    weights_dir: Path,
    *,
    crc: bool = False,
    progress: ProgressCallback | None = None,
) -> list[RankFile]:
    """Read each source tensor once, cast it to the dtype the network declares, write each rank's part.

    Only the tensor in hand is in memory: peak memory follows the largest tensor, not the model.
    """
    writers = []
    for rank in range(tp):
        path = rank_file_path(weights_dir, rank)
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        writers.append(CkptWriter(path, crc=crc))
    try:
        current_name: str | None = None
        current: RawTensor | None = None
        for spec in specs:
            if spec.source != current_name:
                current, current_name = None, None  # release the previous tensor before reading the next
                current, current_name = weights.read(spec.source), spec.source
                if progress:
                    progress(weights.entries[spec.source].nbytes)
            assert current is not None
            tensor = current
            if spec.source_rows is not None:
                start, end = spec.source_rows
                tensor = RawTensor(tensor.dtype, tensor.array[start:end])
            tensor = cast(tensor, spec.dtype)
            for writer, part in zip(writers, rank_slices(tensor, spec, tp), strict=True):
                writer.write(spec.target, part)
    finally:
        for writer in writers:
            writer.close()
    return [
        RankFile(rank, writer.path, writer.bytes_written, writer.sha256.hexdigest())
        for rank, writer in enumerate(writers)
    ]
