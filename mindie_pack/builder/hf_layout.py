"""Weight files of the atb/torch profiles (builder/hf_profile.py): placed as MindIE's atb/torch backends read them.

Safetensors are kept as they are: hard-linked when their mode (0640) and owner already fit (MindIE 3.0's rules:
files 0640, owner = the service user unless root; model_deploy_config.cpp:467,481, safe_path.cpp:281-335 at
8b4871ad), else copied; with a `--dtype` other than the stored one they are rewritten, streaming one block of rows
at a time (constant memory), with the overflow check. Written by hand: the safetensors library serializes whole
tensors from memory.
"""

from __future__ import annotations

import json
import math
import shutil
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from mindie_pack.builder.convert import STEP_BYTES, _Source
from mindie_pack.builder.staging import FILE_MODE, link_or_copy
from mindie_pack.errors import PackError
from mindie_pack.hashing import INPUT_HASH, OUTPUT_HASH
from mindie_pack.weights.dtypes import FINITE_MAX, CastOverflow, DType, RawTensor, cast_checked
from mindie_pack.weights.fileio import StreamWriter
from mindie_pack.weights.hf_source import SAFETENSORS_INDEX, HFWeights


def place_weights(weights: HFWeights, dtype: DType, out: Path, *, clamp: bool,
                  progress: Callable[[int], None]) -> dict[Path, dict[str, str]]:
    """Link, copy or convert every weight file into `out`; returns the hash records of the files read and
    written on the way (a converted input and its output: no second read for the manifest)."""
    if any(f.suffix != ".safetensors" for f in weights.files):
        raise PackError(f"{weights.files[0]}: profiles atb/torch need safetensors weights (MindIE's atb loader "
                        "reads safetensors); convert the .bin files first")
    convert = any(e.dtype.is_float and e.dtype is not dtype for e in weights.entries.values())
    if not convert:
        for source in weights.files:
            link_or_copy(source, out / source.name)
            progress(source.stat().st_size)
        index = weights.model_dir / SAFETENSORS_INDEX
        if index.is_file():
            shutil.copyfile(index, out / SAFETENSORS_INDEX)
        return {}
    return _convert_files(weights, dtype, out, clamp=clamp, progress=progress)


def _convert_files(weights: HFWeights, dtype: DType, out: Path, *, clamp: bool,
                   progress: Callable[[int], None]) -> dict[Path, dict[str, str]]:
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hash-input")
    source = _Source(weights, hasher)
    output_hashes: dict[Path, dict[str, str]] = {}
    total = 0
    weight_map: dict[str, str] = {}
    try:
        for file in weights.files:
            entries = sorted((e for e in weights.entries.values() if e.file == file), key=lambda e: e.start)
            header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
            offset = 0
            targets = []
            for entry in entries:
                target = dtype if entry.dtype.is_float else entry.dtype
                nbytes = math.prod(entry.shape) * target.info.itemsize
                header[entry.name] = {"dtype": target.info.safetensors, "shape": list(entry.shape),
                                      "data_offsets": [offset, offset + nbytes]}
                offset += nbytes
                targets.append(target)
                weight_map[entry.name] = file.name
            raw = json.dumps(header, separators=(",", ":")).encode()
            raw += b" " * (-len(raw) % 8)
            total += offset
            writer = StreamWriter(out / file.name, FILE_MODE)
            try:
                writer.write(len(raw).to_bytes(8, "little") + raw)
                for entry, target in zip(entries, targets, strict=True):
                    rows = entry.shape[0] if entry.shape else 1
                    row_bytes = entry.nbytes // max(1, rows)
                    step = max(1, (STEP_BYTES // 4) // max(1, row_bytes))
                    for row in range(0, rows, step):
                        block = source.rows(entry, row, min(row + step, rows))
                        try:
                            stored = cast_checked(RawTensor(entry.dtype, block), target, clamp=clamp).array
                        except CastOverflow as exc:
                            raise PackError(
                                f"{entry.file}: tensor {entry.name!r} has values up to {exc.largest:.6g}, beyond "
                                f"{target.info.name}'s largest {FINITE_MAX[target]:.6g}; pass --clamp to saturate "
                                "them, or keep the stored dtype") from None
                        # a fresh cast result, or the mapped input block: neither changes
                        writer.write(memoryview(np.ascontiguousarray(stored).reshape(-1).view(np.uint8)), owned=True)
                        progress(block.nbytes)
            finally:
                writer.close(sync=True)
            output_hashes[out / file.name] = {OUTPUT_HASH: writer.digest.hexdigest()}
        if (weights.model_dir / SAFETENSORS_INDEX).is_file():
            (out / SAFETENSORS_INDEX).write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
        inputs = {path: {INPUT_HASH: digest} for path, digest in source.input_hashes().items()}
        return {**inputs, **output_hashes}
    finally:
        hasher.shutdown(wait=True, cancel_futures=True)
        source.close()
