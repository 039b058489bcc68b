"""Reading a built directory's rank files back: each tensor put together again by the build's split rules.

Shared by `verify` (bit-exact comparison in the stored dtype) and the CPU runtime (float32 weights).
"""

from __future__ import annotations

import numpy as np

from mindie_pack.builder.convert import rank_file_path
from mindie_pack.builder.model_dir import BuiltModelDir
from mindie_pack.errors import PackError
from mindie_pack.models import TensorSpec
from mindie_pack.weights.ckpt_format import CkptFormatError, CkptRecord, read_record, scan_records
from mindie_pack.weights.dtypes import RawTensor

RankIndex = dict[str, CkptRecord]


def rank_indexes(built: BuiltModelDir) -> list[RankIndex]:
    """The records of every rank file, without reading any tensor data."""
    indexes = []
    for rank in range(built.tp):
        path = rank_file_path(built.weights_dir, rank)
        if not path.is_file():
            raise PackError(f"{path}: missing (model_parallel={built.tp} in {built.yaml_path.name} needs "
                            f"rank_0..rank_{built.tp - 1})")
        try:
            indexes.append({record.name: record for record in scan_records(path)})
        except CkptFormatError as exc:
            raise PackError(f"{path}: unreadable checkpoint ({exc})") from exc
    return indexes


def merged_tensor(built: BuiltModelDir, indexes: list[RankIndex], spec: TensorSpec) -> RawTensor:
    """The full tensor: shards concatenated on the split axis; replicated copies must be identical."""
    parts = []
    for rank, index in enumerate(indexes):
        path = rank_file_path(built.weights_dir, rank)
        record = index.get(spec.target)
        if record is None:
            raise PackError(f"{path}: tensor {spec.target!r} is missing")
        want = spec.rank_shape(built.tp)
        if record.dims != want:
            raise PackError(f"{path}: tensor {spec.target!r} has shape {list(record.dims)}, expected "
                            f"{list(want)} from {built.yaml_path.name} (model_parallel={built.tp})")
        parts.append(read_record(path, record))
    if spec.split_axis is None:
        for rank, part in enumerate(parts[1:], start=1):
            if part.array.tobytes() != parts[0].array.tobytes():
                raise PackError(f"{built.weights_dir}: replicated tensor {spec.target!r} differs between rank 0 "
                                f"and rank {rank}")
        return parts[0]
    return RawTensor(parts[0].dtype, np.concatenate([p.array for p in parts], axis=spec.split_axis))
