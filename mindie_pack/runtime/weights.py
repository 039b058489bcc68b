"""Full float32 tensors of a built model directory: every rank's shard put back together by the split rules."""

from __future__ import annotations

import numpy as np

from mindie_pack.builder.model_dir import BuiltModelDir
from mindie_pack.builder.shards import merged_tensor, rank_indexes
from mindie_pack.errors import PackError
from mindie_pack.weights.dtypes import to_float32
from mindie_pack.weights.hf_source import HFWeights


def load_full_weights(built: BuiltModelDir) -> dict[str, np.ndarray]:
    """MindFormers parameter name -> full float32 array (shards concatenated on their split axis)."""
    if built.profile == "mf-safetensors":
        return _from_safetensors(built)
    indexes = rank_indexes(built)
    return {spec.target: to_float32(merged_tensor(built, indexes, spec)) for spec in built.specs}


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
