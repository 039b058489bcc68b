"""What the runtime opens, and each rank's own float32 shards.

Two kinds of model directory:
- built for MindIE's ms backend (`mindie-pack build`, one .yaml): profiles mf-ckpt and llm-boost hold one
  checkpoint per rank (weights/rank_N/checkpoint_N.ckpt), read rank by rank, each shard checked against the
  shape its rank needs (parallel.py); mf-safetensors keeps the HF safetensors, split here per rank.
- a Hugging Face folder (config.json + *.safetensors, no yaml), as MindIE's atb/torch backends serve it (the
  atb build profile keeps it as is): full tensors, split here per rank when a tp is asked for.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindie_pack.builder.hf_model import HFModel, load_hf_model
from mindie_pack.builder.model_dir import BuiltModelDir, open_model_dir
from mindie_pack.errors import PackError
from mindie_pack.models import TensorSpec, TpPlan
from mindie_pack.runtime.parallel import Parallel, expected_rank_shape, parallel_of, shard
from mindie_pack.weights.dtypes import DType, to_float32
from mindie_pack.weights.hf_source import HFWeights

RankWeights = dict[str, np.ndarray]  # target name -> this rank's float32 shard


@dataclass(frozen=True)
class ModelSource:
    path: Path
    model: HFModel
    profile: str  # mf-ckpt | llm-boost | mf-safetensors (built ms directories) | hf (an HF folder)
    plan: TpPlan
    specs: list[TensorSpec]
    weights_dir: Path
    origin: str  # the file that fixes the layout, for messages
    built: BuiltModelDir | None = None

    @property
    def tp(self) -> int:
        return self.plan.tp


def is_built_ms_dir(path: Path) -> bool:
    return any(p.suffix in (".yaml", ".yml") and p.is_file() for p in path.iterdir())


def open_source(path: Path, tp: int | None = None) -> ModelSource:
    """A built ms directory (its yaml fixes tp) or an HF folder (tp from the caller, default 1)."""
    if not path.is_dir():
        raise PackError(f"{path}: not a directory (expected a model directory built by mindie-pack, or a "
                        "Hugging Face folder with config.json and *.safetensors)")
    if is_built_ms_dir(path):
        built = open_model_dir(path)
        if tp is not None and tp != built.tp:
            raise PackError(f"{built.yaml_path}: built for tp {built.tp} (parallel_config.model_parallel), "
                            f"not {tp}")
        return ModelSource(built.path, built.model, built.profile, built.plan, built.specs, built.weights_dir,
                           built.yaml_path.name, built)
    model = load_hf_model(path)
    plan = model.family.plan_tp(model.dims, 1 if tp is None else tp, None)
    specs = model.family.tensor_specs(model.dims, plan, DType.FLOAT32)
    return ModelSource(path, model, "hf", plan, specs, path, "config.json")


def load_rank_weights(source: ModelSource) -> list[RankWeights]:
    if source.profile in ("mf-ckpt", "llm-boost"):
        return _from_rank_files(source)
    return _from_full_tensors(source)


def _from_rank_files(source: ModelSource) -> list[RankWeights]:
    from mindie_pack.builder.convert import rank_file_path
    from mindie_pack.builder.shards import rank_indexes
    from mindie_pack.weights.ckpt_format import read_record

    assert source.built is not None
    indexes = rank_indexes(source.built)
    ranks: list[RankWeights] = [{} for _ in range(source.tp)]
    for spec in source.specs:
        kind = parallel_of(spec.target, source.plan)
        want = expected_rank_shape(spec, source.plan)
        first_raw: bytes | None = None
        for rank, index in enumerate(indexes):
            path = rank_file_path(source.weights_dir, rank)
            record = index.get(spec.target)
            if record is None:
                raise PackError(f"{path}: tensor {spec.target!r} is missing")
            if record.dims != want:
                raise PackError(
                    f"{path}: tensor {spec.target!r} has shape {list(record.dims)}, expected {list(want)} "
                    f"(rank {rank} of {source.tp} computes it {kind.value}; model_parallel={source.tp} in "
                    f"{source.origin})")
            raw = read_record(path, record)
            if kind is Parallel.REPLICATED:
                # Every rank computes with its own copy; identical copies let the ranks share one array.
                data = raw.array.tobytes()
                if first_raw is None:
                    first_raw = data
                elif data != first_raw:
                    raise PackError(f"{source.weights_dir}: replicated tensor {spec.target!r} differs between "
                                    f"rank 0 and rank {rank}")
                else:
                    ranks[rank][spec.target] = ranks[0][spec.target]
                    continue
            ranks[rank][spec.target] = to_float32(raw)
    return ranks


def _from_full_tensors(source: ModelSource) -> list[RankWeights]:
    weights = HFWeights(source.weights_dir)
    ranks: list[RankWeights] = [{} for _ in range(source.tp)]
    for spec in source.specs:
        if spec.source not in weights:
            raise PackError(f"{source.weights_dir}: tensor {spec.source!r} is missing")
        array = to_float32(weights.read(spec.source))
        if spec.source_rows is not None:
            array = array[spec.source_rows[0]:spec.source_rows[1]]
        if tuple(array.shape) != spec.shape:
            raise PackError(f"{source.weights_dir}: tensor {spec.source!r} has shape {list(array.shape)}, "
                            f"expected {list(spec.shape)} from config.json")
        kind = parallel_of(spec.target, source.plan)
        for rank in range(source.tp):
            ranks[rank][spec.target] = shard(array, kind, source.tp, rank)
    return ranks
