"""Write a safetensors file one tensor at a time.

Why by hand: `safetensors.serialize_file`/`save_file` want every tensor of the file in memory at once. The
format (u64 little-endian header length, JSON header with dtype/shape/data_offsets, raw bytes) lets us write
the header first from the known shapes and then stream each tensor's bytes, so memory stays at one tensor.
The files are read back with the `safetensors` library itself in the tests.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path
from typing import BinaryIO

import numpy as np

from mindie_pack.weights.dtypes import DType, RawTensor


class SafetensorsWriter:
    def __init__(self, path: Path, layout: list[tuple[str, DType, tuple[int, ...]]],
                 metadata: dict[str, str] | None = None) -> None:
        header: dict[str, object] = {"__metadata__": metadata or {"format": "pt"}}
        offset = 0
        self._order: list[tuple[str, DType, tuple[int, ...]]] = list(layout)
        for name, dtype, shape in self._order:
            size = int(np.prod(shape, dtype=np.int64)) * dtype.info.itemsize if shape else dtype.info.itemsize
            header[name] = {"dtype": dtype.info.safetensors, "shape": list(shape),
                            "data_offsets": [offset, offset + size]}
            offset += size
        raw = json.dumps(header, separators=(",", ":")).encode()
        raw += b" " * (-len(raw) % 8)  # the reference implementation pads the header to 8 bytes
        self.path = path
        self.data_bytes = offset
        self._next = 0
        self._file: BinaryIO = path.open("wb")
        self._file.write(struct.pack("<Q", len(raw)) + raw)

    def write(self, name: str, tensor: RawTensor) -> None:
        want_name, dtype, shape = self._order[self._next]
        if name != want_name or tensor.dtype is not dtype or tuple(tensor.shape) != tuple(shape):
            raise ValueError(f"{self.path}: expected {want_name} {dtype.info.name} {list(shape)} next, got {name} "
                             f"{tensor.dtype.info.name} {list(tensor.shape)}")
        array = np.ascontiguousarray(tensor.array)
        self._file.write(memoryview(array.reshape(-1).view(np.uint8)))
        self._next += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()
        if self._next != len(self._order):
            raise ValueError(f"{self.path}: {len(self._order) - self._next} tensors were never written")

    def __enter__(self) -> SafetensorsWriter:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self._file.close()
