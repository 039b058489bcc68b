"""The "tensor source" the converter reads: HF tensor names -> lazily read arrays.

`HFWeights` (an HF folder) is the original one; the classes here present MindFormers checkpoints, training
outputs, built model directories and LoRA-merged weights through the same duck-typed surface
(`entries`, `files`, `model_dir`, `read`, `__contains__`, `iter_entries`), so `builder/convert.py` and the
HF exporter do not know where a tensor came from. Nothing is read until `read(name)` is called, and each
call returns one tensor.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

from mindie_pack.weights.dtypes import DType, RawTensor
from mindie_pack.weights.hf_source import TensorEntry

Reader = Callable[[], RawTensor]


def virtual_entry(name: str, dtype: DType, shape: tuple[int, ...], file: Path) -> TensorEntry:
    """A TensorEntry for a tensor that is computed (merged, concatenated) rather than sliced from one file."""
    nbytes = dtype.info.itemsize
    for dim in shape:
        nbytes *= dim
    return TensorEntry(name, dtype, tuple(shape), file, 0, nbytes)


class ComputedWeights:
    """Tensors in HF naming, each produced on demand by a reader function."""

    def __init__(self, model_dir: Path, files: list[Path]) -> None:
        self.model_dir = model_dir
        self.files = files
        self.entries: dict[str, TensorEntry] = {}
        self._readers: dict[str, Reader] = {}

    def add(self, entry: TensorEntry, reader: Reader) -> None:
        self.entries[entry.name] = entry
        self._readers[entry.name] = reader

    def __contains__(self, name: str) -> bool:
        return name in self.entries

    def read(self, name: str) -> RawTensor:
        return self._readers[name]()

    def iter_entries(self) -> Iterator[TensorEntry]:
        return iter(self.entries.values())
