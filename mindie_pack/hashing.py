"""Which hash the manifest keeps for which file, and hashing a file in constant memory.

Inputs get sha256: for a safetensors file it is the Hugging Face Hub's LFS object id, so a user can hold the
files a model was built from against the Hub. Files we write get XXH3-128 (the `xxhash` library): the
manifest is not signed and lies beside the files it lists, so a cryptographic hash of them proves nothing
a fast one does not (whoever can change a weight file can change the manifest), while it detects the same
corruption, truncation or edits. sha256 ran at ~1.2 GB/s on our CI cores and was a third of the CPU time of
a build on 2 cores; XXH3 runs at ~8 GB/s (issue 13). A record names its algorithm (`{"sha256": ...}` or
`{"xxh3_128": ...}`), so manifests of format 1 (sha256 everywhere) still verify.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import Any, Protocol

INPUT_HASH = "sha256"
OUTPUT_HASH = "xxh3_128"
ALGORITHMS = (OUTPUT_HASH, INPUT_HASH)  # in order of preference when a record has several
_STEP = 8 * 1024 * 1024


class Hasher(Protocol):
    def update(self, data: Any, /) -> None: ...

    def hexdigest(self) -> str: ...


def new_hasher(algorithm: str) -> Hasher:
    if algorithm == OUTPUT_HASH:
        import xxhash  # releases the GIL on large buffers, as hashlib does

        return xxhash.xxh3_128()
    if algorithm == INPUT_HASH:
        return hashlib.sha256()
    raise ValueError(f"unknown hash algorithm {algorithm!r} (known: {', '.join(ALGORITHMS)})")


class HashCancelled(Exception):
    pass


def hash_file(path: Path, algorithm: str, cancel: threading.Event | None = None) -> str:
    """The file's hash in 8 MiB steps (constant memory); stops with HashCancelled once `cancel` is set."""
    hasher = new_hasher(algorithm)
    with path.open("rb", buffering=0) as handle:
        # about the file's size: a zeroed 8 MiB buffer for each small tokenizer file cost more than its hash
        buffer = bytearray(min(_STEP, max(1 << 16, os.fstat(handle.fileno()).st_size)))
        view = memoryview(buffer)
        while got := handle.readinto(buffer):
            if cancel is not None and cancel.is_set():
                raise HashCancelled(path)
            hasher.update(view[:got])
    return hasher.hexdigest()


def record_hash(record: dict[str, Any]) -> tuple[str, str] | None:
    """(algorithm, hex digest) of a manifest file record, the preferred algorithm when it has several."""
    for algorithm in ALGORITHMS:
        if isinstance(record.get(algorithm), str):
            return algorithm, record[algorithm]
    return None
