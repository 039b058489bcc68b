"""Read Hugging Face weights one tensor at a time: safetensors (single or sharded) or pytorch_model*.bin.

Why our own safetensors reading rather than `safetensors.safe_open`: its numpy API cannot return bfloat16
(numpy has no such dtype), and its memory map keeps every page it touched resident for as long as the file
is open, so converting a model through it makes peak RSS grow with the model size. The format is a u64
header length, a JSON header and raw bytes; we parse the header and `readinto` one tensor's bytes at a
time, so peak memory is bounded by the largest tensor.
"""

from __future__ import annotations

import json
import math
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mindie_pack.errors import PackError
from mindie_pack.weights.dtypes import DType, RawTensor

SAFETENSORS_INDEX = "model.safetensors.index.json"
BIN_INDEX = "pytorch_model.bin.index.json"
_MAX_HEADER_BYTES = 100 * 1024 * 1024


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: DType
    shape: tuple[int, ...]
    file: Path
    start: int  # absolute byte offset in `file` (safetensors only)
    end: int

    @property
    def nbytes(self) -> int:
        return self.end - self.start


def read_safetensors_header(path: Path) -> list[TensorEntry]:
    """Parse and check a safetensors header; every error names the file (and tensor)."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        prefix = handle.read(8)
        if len(prefix) < 8:
            raise PackError(f"{path}: truncated safetensors file ({size} bytes, no header)")
        (header_len,) = struct.unpack("<Q", prefix)
        if header_len > min(_MAX_HEADER_BYTES, size - 8):
            raise PackError(
                f"{path}: corrupt or truncated safetensors file (header claims {header_len} bytes, "
                f"file has {size})"
            )
        raw_header = handle.read(header_len)
    try:
        header: dict[str, Any] = json.loads(raw_header)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PackError(f"{path}: corrupt safetensors header (not JSON: {exc})") from exc
    data_start = 8 + header_len
    data_len = size - data_start
    entries = []
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            dtype = DType.from_safetensors(info["dtype"])
        except KeyError:
            raise PackError(
                f"{path}: tensor {name!r} has unsupported dtype {info.get('dtype')!r} "
                "(expected one of F32, F16, BF16, F64, I64, I32, I8, U8, BOOL)"
            ) from None
        shape = tuple(int(d) for d in info["shape"])
        begin, end = (int(v) for v in info["data_offsets"])
        expected = math.prod(shape) * dtype.info.itemsize
        if end - begin != expected:
            raise PackError(
                f"{path}: tensor {name!r} has {end - begin} bytes, expected {expected} for shape "
                f"{list(shape)} {dtype.info.name}"
            )
        if end > data_len:
            raise PackError(
                f"{path}: truncated safetensors file: tensor {name!r} ends at byte {data_start + end}, "
                f"file has {size}"
            )
        entries.append(TensorEntry(name, dtype, shape, path, data_start + begin, data_start + end))
    return entries


class HFWeights:
    """All tensors of an HF model folder, indexed by name, read on demand."""

    def __init__(self, model_dir: Path) -> None:
        self.model_dir = model_dir
        self.files: list[Path] = []
        self.entries: dict[str, TensorEntry] = {}
        self._bin_state: dict[Path, dict[str, Any]] = {}
        self._discover()

    # -- discovery -----------------------------------------------------------------------------
    def _discover(self) -> None:
        st_index = self.model_dir / SAFETENSORS_INDEX
        st_files = sorted(self.model_dir.glob("*.safetensors"))
        if st_index.is_file():
            self._add_indexed(st_index, self._add_safetensors)
        elif st_files:
            for file in st_files:
                self._add_safetensors(file)
        elif (self.model_dir / BIN_INDEX).is_file():
            self._add_indexed(self.model_dir / BIN_INDEX, self._add_bin)
        elif bins := sorted(self.model_dir.glob("pytorch_model*.bin")):
            for file in bins:
                self._add_bin(file)
        else:
            raise PackError(
                f"{self.model_dir}: no weights found (expected model.safetensors, "
                f"model-XXXXX-of-YYYYY.safetensors + {SAFETENSORS_INDEX}, or pytorch_model*.bin)"
            )

    def _add_indexed(self, index_path: Path, add_file: Any) -> None:
        try:
            weight_map: dict[str, str] = json.loads(index_path.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise PackError(f"{index_path}: not a valid weight index (expected a 'weight_map' object)") from exc
        for file_name in sorted(set(weight_map.values())):
            file = self.model_dir / file_name
            if not file.is_file():
                raise PackError(f"{index_path}: lists shard {file_name!r}, which is missing from {self.model_dir}")
            add_file(file)
        for name, file_name in weight_map.items():
            entry = self.entries.get(name)
            if entry is None or entry.file.name != file_name:
                raise PackError(f"{index_path}: tensor {name!r} is listed in {file_name!r} but is not in that file")

    def _add_entry(self, entry: TensorEntry) -> None:
        if entry.name in self.entries:
            raise PackError(
                f"{entry.file}: tensor {entry.name!r} also appears in {self.entries[entry.name].file.name}"
            )
        self.entries[entry.name] = entry

    def _add_safetensors(self, file: Path) -> None:
        self.files.append(file)
        for entry in read_safetensors_header(file):
            self._add_entry(entry)

    def _add_bin(self, file: Path) -> None:
        try:
            import torch
        except ImportError:
            raise PackError(
                f"{file}: reading pytorch_model*.bin weights needs torch (pip install torch); "
                "or convert the model to safetensors first"
            ) from None
        try:
            state = torch.load(file, map_location="cpu", mmap=True, weights_only=True)
        except Exception as exc:  # torch raises many kinds for corrupt pickles/zips
            raise PackError(f"{file}: cannot read PyTorch weights ({exc.__class__.__name__}: {exc})") from exc
        self.files.append(file)
        self._bin_state[file] = state
        torch_to_dtype = {
            torch.float32: DType.FLOAT32, torch.float16: DType.FLOAT16, torch.bfloat16: DType.BFLOAT16,
            torch.float64: DType.FLOAT64, torch.int64: DType.INT64, torch.int32: DType.INT32,
            torch.int8: DType.INT8, torch.uint8: DType.UINT8, torch.bool: DType.BOOL,
        }
        for name, tensor in state.items():
            if tensor.dtype not in torch_to_dtype:
                raise PackError(f"{file}: tensor {name!r} has unsupported dtype {tensor.dtype}")
            dtype = torch_to_dtype[tensor.dtype]
            nbytes = tensor.numel() * dtype.info.itemsize
            self._add_entry(TensorEntry(name, dtype, tuple(tensor.shape), file, 0, nbytes))

    # -- reading -------------------------------------------------------------------------------
    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def read(self, name: str) -> RawTensor:
        entry = self.entries[name]
        if entry.file in self._bin_state:
            return self._read_bin(entry)
        array = np.empty(entry.shape, dtype=entry.dtype.info.storage)
        buffer = memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
        fd = os.open(entry.file, os.O_RDONLY)
        try:
            done = 0
            while done < entry.nbytes:
                got = os.preadv(fd, [buffer[done:]], entry.start + done)
                if got == 0:
                    raise PackError(f"{entry.file}: truncated while reading tensor {name!r}")
                done += got
        finally:
            os.close(fd)
        if entry.dtype.info.storage.byteorder == ">":  # pragma: no cover - little-endian hosts only
            array = array.byteswap()
        return RawTensor(entry.dtype, array)

    def read_rows(self, name: str, start: int, end: int) -> np.ndarray:
        """Rows [start, end) of a safetensors tensor (raw storage dtype), reading only those bytes."""
        entry = self.entries[name]
        if entry.file in self._bin_state:
            return self._read_bin(entry).array[start:end]
        row_bytes = entry.nbytes // max(1, entry.shape[0])
        array = np.empty((end - start, *entry.shape[1:]), dtype=entry.dtype.info.storage)
        with entry.file.open("rb", buffering=0) as handle:
            handle.seek(entry.start + start * row_bytes)
            if handle.readinto(memoryview(array.reshape(-1).view(np.uint8))) != array.nbytes:
                raise PackError(f"{entry.file}: truncated while reading tensor {name!r}")
        return array

    def _read_bin(self, entry: TensorEntry) -> RawTensor:
        import torch

        tensor = self._bin_state[entry.file][entry.name].contiguous()
        if entry.dtype is DType.BFLOAT16:
            array = tensor.view(torch.int16).numpy().view(np.uint16).copy()
        else:
            array = tensor.numpy().copy()
        return RawTensor(entry.dtype, array)

    def iter_entries(self) -> Iterator[TensorEntry]:
        return iter(self.entries.values())
