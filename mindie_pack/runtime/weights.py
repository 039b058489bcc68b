"""Full float32 tensors of a built model directory: every rank's shard put back together by the split rules."""

from __future__ import annotations

import numpy as np

from mindie_pack.build.convert import rank_file_path
from mindie_pack.build.model_dir import BuiltModelDir
from mindie_pack.errors import PackError
from mindie_pack.weights.ckpt_format import CkptFormatError, CkptRecord, read_record, scan_records
from mindie_pack.weights.dtypes import to_float32
from mindie_pack.weights.hf_source import HFWeights


def load_full_weights(built: BuiltModelDir) -> dict[str, np.ndarray]:
    """MindFormers parameter name -> full float32 array (shards concatenated on their split axis)."""
    if built.profile == "mf-safetensors":
        return _from_safetensors(built)
    indexes = [_rank_index(built, rank) for rank in range(built.tp)]
    weights: dict[str, np.ndarray] = {}
    for spec in built.specs:
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
            parts.append(to_float32(read_record(path, record)))
        weights[spec.target] = parts[0] if spec.split_axis is None else np.concatenate(parts, axis=spec.split_axis)
    return weights


def _rank_index(built: BuiltModelDir, rank: int) -> dict[str, CkptRecord]:
    path = rank_file_path(built.weights_dir, rank)
    if not path.is_file():
        raise PackError(f"{path}: missing (model_parallel={built.tp} in {built.yaml_path.name} needs "
                        f"rank_0..rank_{built.tp - 1})")
    try:
        return {record.name: record for record in scan_records(path)}
    except CkptFormatError as exc:
        raise PackError(f"{path}: unreadable checkpoint ({exc})") from exc


def _from_safetensors(built: BuiltModelDir) -> dict[str, np.ndarray]:
    source = HFWeights(built.weights_dir)
    weights: dict[str, np.ndarray] = {}
    for spec in built.specs:
        if spec.source not in source:
            raise PackError(f"{built.weights_dir}: tensor {spec.source!r} is missing")
        array = to_float32(source.read(spec.source))
        if spec.source_rows is not None:
            array = array[spec.source_rows[0]:spec.source_rows[1]]
        if tuple(array.shape) != spec.shape:
            raise PackError(f"{built.weights_dir}: tensor {spec.source!r} has shape {list(array.shape)}, "
                            f"expected {list(spec.shape)} from config.json")
        weights[spec.target] = array
    return weights
