"""manifest.json: what was built, from what, with which options; every file with its size and hash
(sha256 for inputs, XXH3-128 for what we wrote: mindie_pack/hashing.py says why)."""

from __future__ import annotations

import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from mindie_pack import __version__
from mindie_pack.errors import PackError
from mindie_pack.hashing import INPUT_HASH, OUTPUT_HASH, hash_file

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = 2  # 2: outputs hashed with XXH3-128; format 1 (sha256 everywhere) is still read
READABLE_FORMATS = (1, 2)

# A known hash of a file: {algorithm: hex digest}, one entry, merged into the file's manifest record.
HashRecord = dict[str, str]

class BackgroundHashes:
    """sha256 of some inputs on a second thread while the conversion runs (hashlib releases the GIL).

    `cancel()` stops it within one 8 MiB step: a failed or interrupted build does not wait for the
    hashing of every input (140 GB for a 72B model)."""

    def __init__(self, paths: list[Path]) -> None:
        self._cancel = threading.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash-inputs")
        self._future: Future[dict[Path, HashRecord]] = self._executor.submit(
            lambda: {p: {INPUT_HASH: hash_file(p, INPUT_HASH, self._cancel)} for p in paths})
        self._executor.shutdown(wait=False)

    def result(self) -> dict[Path, HashRecord]:
        return self._future.result()

    def cancel(self) -> None:
        self._cancel.set()

    def __enter__(self) -> BackgroundHashes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


def file_record(path: Path, root: Path | None, known: HashRecord | None, algorithm: str) -> dict[str, Any]:
    return {
        "path": str(path.relative_to(root)) if root else str(path),
        "size": path.stat().st_size,
        **(known or {algorithm: hash_file(path, algorithm)}),
    }


def build_manifest(
    *,
    root: Path,
    inputs: list[Path],
    known_hashes: dict[Path, HashRecord],
    options: dict[str, Any],
    model: dict[str, Any],
    tensors: dict[str, Any],
) -> dict[str, Any]:
    outputs = sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST_NAME)
    return {
        "format": MANIFEST_FORMAT,
        "tool": {"name": "mindie-pack", "version": __version__},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": options,
        "model": model,
        "tensors": tensors,
        "inputs": [file_record(p, None, known_hashes.get(p), INPUT_HASH) for p in inputs],
        "outputs": [file_record(p, root, known_hashes.get(p), OUTPUT_HASH) for p in outputs],
    }


def write_manifest(root: Path, manifest: dict[str, Any]) -> Path:
    path = root / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2, sort_keys=False) + "\n")
    return path


def read_manifest(model_dir: Path) -> dict[str, Any]:
    path = model_dir / MANIFEST_NAME
    if not path.is_file():
        raise PackError(f"{path}: missing; is {model_dir} a directory written by `mindie-pack build`?")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise PackError(f"{path}: not valid JSON ({exc})") from exc
    if manifest.get("format") not in READABLE_FORMATS:
        raise PackError(f"{path}: manifest format {manifest.get('format')!r}, expected one of "
                        f"{', '.join(map(str, READABLE_FORMATS))} (written by a newer mindie-pack?)")
    return manifest
