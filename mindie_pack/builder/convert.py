"""Check HF tensors against the family's plan, then stream them into one .ckpt per tensor-parallel rank."""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

import numpy as np

from mindie_pack.errors import PackError
from mindie_pack.models import ModelDims, ModelFamily, TensorSpec
from mindie_pack.weights.ckpt_format import CkptWriter
from mindie_pack.weights.dtypes import FINITE_MAX, CastOverflow, RawTensor, cast_checked, largest_finite_abs
from mindie_pack.weights.fileio import (
    SequentialHash,
    TrailingJobs,
    advise_sequential,
    advise_willneed,
    map_range,
)
from mindie_pack.weights.hf_source import HFWeights, TensorEntry

ProgressCallback = Callable[[int], None]


@dataclass(frozen=True)
class RankFile:
    rank: int
    path: Path
    size: int
    digest: str  # OUTPUT_HASH (mindie_pack/hashing.py)


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


# Source bytes handled per step: bounds the memory of one step whatever the tensor size.
STEP_BYTES = 32 * 1024 * 1024


@dataclass
class ConversionResult:
    rank_files: list[RankFile]
    input_hashes: dict[Path, str]  # INPUT_HASH of the safetensors files, taken while reading them


# How far the input hash may trail the conversion, in blocks (STEP_BYTES each): it reads what the
# conversion read moments before, from the page cache, so the lag is bounded by what the page cache can keep
# (a quarter of the available memory) and by 64 jobs (a job is one block, or one block and the gap before it:
# ~2 GiB). sha256 (1.3 GB/s with SHA-NI) is the slowest stream of a build on 2 cores: with a lag of 512 MiB
# the conversion waited for it (0.7 s of a 1.88 GB tp 2 build, py-spy); with more, the hash catches up
# during the final fdatasync, when the CPUs are idle.
HASH_LAG_MAX_BLOCKS = 64


def hash_lag_blocks() -> int:
    import psutil

    return max(4, min(HASH_LAG_MAX_BLOCKS, psutil.virtual_memory().available // 4 // STEP_BYTES))


# Write buffers in flight per rank file (4 MiB each): 32 MiB in all at tp 1 and 2, a step's worth.
WRITE_BUFFERS_TOTAL = 8


class _Source:
    """Row-range reads of HF tensors: safetensors through read-only mappings of the block's bytes (no copy out
    of the page cache; weights/fileio.map_range), .bin and other sources through `weights.read` (whole tensor,
    then sliced).

    Safetensors files are hashed by jobs on `hasher` (one thread, so in file order) that trail the
    conversion by up to hash_lag_blocks() blocks, reading the same bytes again from the page cache: the
    conversion never waits for sha256 (the slowest stream of the build on 2 cores) block by block. Without a
    hasher the jobs run at once. While a block is being converted the kernel is asked to read the next one
    (POSIX_FADV_WILLNEED), so a model on disk is read while the previous block is hashed and written rather
    than after. A block's mapping lives as long as someone (the caller, a StreamWriter) holds a view of it:
    `owned` blocks never change."""

    def __init__(self, weights: HFWeights, hasher: ThreadPoolExecutor | None = None) -> None:
        self.weights = weights
        # Mapped reads only for a plain HF folder: other tensor sources (a MindSpore checkpoint, a training
        # output merged by strategy, weights with a LoRA merged in; weights/tensor_source.py) give their tensors
        # through `read` only, one tensor held at a time.
        self.raw_files = type(weights) is HFWeights
        self._fds: dict[Path, int] = {}
        self.hashes: dict[Path, SequentialHash] = {}
        self._jobs = TrailingJobs(hasher, hash_lag_blocks())
        self._held: tuple[str, RawTensor] | None = None

    def _fd(self, path: Path) -> int:
        if path not in self._fds:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            advise_sequential(fd)
            self._fds[path] = fd
            self.hashes[path] = SequentialHash(fd)
        return self._fds[path]

    def rows(self, entry: TensorEntry, start: int, end: int) -> np.ndarray:
        """Rows [start, end) of the tensor. From a safetensors file: a read-only view of the mapped bytes
        that never changes; from other sources: a slice of the tensor, valid until the next call."""
        tail = entry.shape[1:]
        if entry.file.suffix != ".safetensors" or not self.raw_files:
            if self._held is None or self._held[0] != entry.name:
                self._held = None
                self._held = (entry.name, self.weights.read(entry.name))
            array = self._held[1].array
            return array[start:end] if array.ndim else array
        row_bytes = entry.nbytes // max(1, entry.shape[0]) if entry.shape else entry.nbytes
        offset = entry.start + start * row_bytes
        count = (end - start) * row_bytes if entry.shape else entry.nbytes
        fd = self._fd(entry.file)
        if offset + count > self.hashes[entry.file].size:
            raise PackError(f"{entry.file}: truncated while reading tensor {entry.name!r}")
        view = map_range(fd, offset, count)
        advise_willneed(fd, offset + count, count)
        self._jobs.submit(self.hashes[entry.file].job_for(offset, count))
        array = np.frombuffer(view, dtype=entry.dtype.info.storage)
        return array.reshape((end - start, *tail)) if entry.shape else array.reshape(())

    def input_hashes(self) -> dict[Path, str]:
        self._jobs.drain()
        return {path: hasher.hexdigest() for path, hasher in self.hashes.items()}

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def _conversion_order(weights: HFWeights, specs: list[TensorSpec]) -> list[TensorSpec]:
    """Specs grouped by source tensor, groups in the order their bytes sit in the input files (sequential
    reads, one pass for the input hashes); within a group, the family's order."""
    files = {path: index for index, path in enumerate(weights.files)}
    first: dict[str, int] = {}
    for index, spec in enumerate(specs):
        first.setdefault(spec.source, index)

    if type(weights) is not HFWeights:  # other tensor sources: no byte positions to follow (see _Source)
        return list(specs)

    def key(spec: TensorSpec) -> tuple[int, int, int, int]:
        entry = weights.entries[spec.source]
        rows = spec.source_rows[0] if spec.source_rows else 0
        return files.get(entry.file, len(files)), entry.start, first[spec.source], rows

    return sorted(specs, key=key)


def _rank_part(array: np.ndarray, spec: TensorSpec, tp: int, rank: int, row0: int, rows_per_rank: int) -> np.ndarray:
    """Rank `rank`'s share of a block of rows starting at spec row `row0` (may be empty for axis 0)."""
    if spec.split_axis is None or tp == 1:
        return array
    if spec.split_axis == 0:
        lo = max(rank * rows_per_rank - row0, 0)
        hi = min((rank + 1) * rows_per_rank - row0, array.shape[0])
        return array[lo:hi] if hi > lo else array[:0]
    size = array.shape[spec.split_axis] // tp
    index: list[slice] = [slice(None)] * array.ndim
    index[spec.split_axis] = slice(rank * size, (rank + 1) * size)
    return array[tuple(index)]  # strided: _feed writes its rows without gathering them


def _feed(writer: CkptWriter, part: np.ndarray, *, owned: bool) -> None:
    """One rank's part of a block. `owned`: the bytes never change (a mapped input block, a fresh cast
    result), so the writer keeps references instead of copies; a column split (rows contiguous, not each
    other) goes out as a vector of rows (pwritev) instead of being gathered into a new array first."""
    if owned and part.ndim == 2 and part.size and not part.flags.c_contiguous \
            and part.strides[1] == part.itemsize:
        rows = part.view(np.uint8)
        writer.feed_rows([memoryview(rows[i]) for i in range(rows.shape[0])])
    else:  # a gathered copy (non-contiguous part) is fresh: the writer may keep it too
        writer.feed(_as_bytes(part), owned=owned or not part.flags.c_contiguous)


def _as_bytes(array: np.ndarray) -> memoryview:
    if not array.size:
        return memoryview(b"")
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)
    return memoryview(array.reshape(-1).view(np.uint8))


def convert_to_ranks(
    weights: HFWeights,
    specs: list[TensorSpec],
    tp: int,
    weights_dir: Path,
    *,
    crc: bool = False,
    clamp: bool = False,
    progress: ProgressCallback | None = None,
) -> ConversionResult:
    """Stream every source tensor, a block of rows at a time, into each rank's `.ckpt`.

    Memory is bounded by STEP_BYTES (plus a cast's temporaries and the read and write buffers), not by the
    tensor or model size. Input files are read once, in file order, and hashed on the way; the output hashes
    are taken from the bytes as they are written. Reading, hashing and writing overlap: the input hash runs
    on its own thread (_Source), each rank file's hash and writes on the StreamWriter's (hashlib, preadv and
    pwrite release the GIL), so the disk always has work queued. Every rank file is on disk (fdatasync)
    when this returns.
    """
    writers = []
    for rank in range(tp):
        path = rank_file_path(weights_dir, rank)
        path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        writers.append(CkptWriter(path, crc=crc, buffers=max(2, WRITE_BUFFERS_TOTAL // tp)))
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash-input")
    source = _Source(weights, hasher)
    try:
        for spec in _conversion_order(weights, specs):
            entry = weights.entries[spec.source]
            first_row, end_row = spec.source_rows or (0, entry.shape[0] if entry.shape else 1)
            total_rows = end_row - first_row
            rank_shape = spec.rank_shape(tp)
            rank_bytes = math.prod(rank_shape) * spec.dtype.info.itemsize
            for writer in writers:
                writer.begin(spec.target, rank_shape, spec.dtype, rank_bytes)
            rows_per_rank = total_rows // tp if spec.split_axis == 0 else total_rows
            row_bytes = entry.nbytes // max(1, entry.shape[0]) if entry.shape else entry.nbytes
            # A cast makes float32 temporaries (2-3x the block): smaller blocks keep memory flat.
            block_bytes = STEP_BYTES if entry.dtype is spec.dtype else STEP_BYTES // 4
            step = max(1, block_bytes // max(1, row_bytes))
            for row in range(first_row, end_row, step):
                rows = source.rows(entry, row, min(row + step, end_row))
                try:
                    stored = cast_checked(RawTensor(entry.dtype, rows), spec.dtype, clamp=clamp).array
                except CastOverflow as exc:
                    _refuse_overflow(source, entry, spec, exc)
                for rank, writer in enumerate(writers):
                    _feed(writer, _rank_part(stored, spec, tp, rank, row - first_row, rows_per_rank),
                          owned=source.raw_files)
                if progress:
                    progress(rows.nbytes)
        for writer in writers:
            writer.close(sync=True)
        return ConversionResult(
            [RankFile(rank, w.path, w.bytes_written, w.digest.hexdigest()) for rank, w in enumerate(writers)],
            source.input_hashes(),
        )
    finally:
        hasher.shutdown(wait=True, cancel_futures=True)
        for writer in writers:
            writer.close()
        source.close()


def _refuse_overflow(source: _Source, entry: TensorEntry, spec: TensorSpec, exc: CastOverflow) -> NoReturn:
    largest = exc.largest
    rows = entry.shape[0] if entry.shape else 1
    row_bytes = entry.nbytes // max(1, rows)
    step = max(1, STEP_BYTES // max(1, row_bytes))
    for row in range(0, rows, step):  # the whole tensor's largest value, for the message
        block = source.rows(entry, row, min(row + step, rows))
        largest = max(largest, largest_finite_abs(RawTensor(entry.dtype, block)))
    raise PackError(
        f"{entry.file}: tensor {entry.name!r} has values up to {largest:.6g}, beyond {spec.dtype.info.name}'s "
        f"largest {FINITE_MAX[spec.dtype]:.6g}: casting it for {spec.target!r} would make them inf; pass --clamp "
        f"to saturate them at ±{FINITE_MAX[spec.dtype]:.6g}, or choose another --dtype"
    )
