"""How each rank of a tensor-parallel decoder computes with its own shards (Megatron-style, as MindFormers'
and MindIE's parallel layers do), and therefore which shard shape it needs from each tensor.

This is the runtime's half of the contract, written from the computation, not from the build's split rules:
- column-parallel (q/k/v projections and their biases, gate/up): a rank owns a contiguous block of output
  features (whole heads for q/k/v) and computes only those; no communication.
- row-parallel (o_proj, down_proj): a rank owns the matching block of input features and computes a partial
  sum of the full output; the ranks' partial sums are added (the all-reduce).
- vocab-parallel (embedding, lm_head) when the model's rules split the vocabulary (models/, `TpPlan`):
  a rank owns a contiguous block of vocabulary rows; the embedding lookups are summed across ranks, the
  logits concatenated.
- replicated (norms, q/k norms, unsplit embedding/lm_head): every rank holds the full tensor.

The build's split axes (TensorSpec.split_axis) are not read here: a build that splits a tensor on another axis
writes shards of another shape, which `rank_shape` refuses, or a layout the per-rank computation gets wrong,
which the comparison with transformers catches.
"""

from __future__ import annotations

from enum import Enum

import numpy as np

from mindie_pack.errors import PackError
from mindie_pack.models import TensorSpec, TpPlan


class Parallel(Enum):
    COLUMN = "column-parallel"
    ROW = "row-parallel"
    VOCAB = "vocab-parallel"
    REPLICATED = "replicated"


# Per-layer tensors by the suffix of their (MindFormers-style) target name, see models/base.py tensor_specs.
LAYER_ROLES: dict[str, Parallel] = {
    "attention.wq.weight": Parallel.COLUMN,
    "attention.wk.weight": Parallel.COLUMN,
    "attention.wv.weight": Parallel.COLUMN,
    "attention.wq.bias": Parallel.COLUMN,
    "attention.wk.bias": Parallel.COLUMN,
    "attention.wv.bias": Parallel.COLUMN,
    "attention.wo.weight": Parallel.ROW,
    "feed_forward.w1.weight": Parallel.COLUMN,
    "feed_forward.w3.weight": Parallel.COLUMN,
    "feed_forward.w2.weight": Parallel.ROW,
    "attention_norm.weight": Parallel.REPLICATED,
    "ffn_norm.weight": Parallel.REPLICATED,
    "attention.q_norm.weight": Parallel.REPLICATED,
    "attention.k_norm.weight": Parallel.REPLICATED,
}
EMBEDDING = "model.tok_embeddings.embedding_weight"
LM_HEAD = "lm_head.weight"
FINAL_NORM = "model.norm_out.weight"


def layer_role(target: str) -> tuple[int, str]:
    """'model.layers.3.attention.wq.weight' -> (3, 'attention.wq.weight')."""
    parts = target.split(".", 3)
    if len(parts) != 4 or parts[:2] != ["model", "layers"] or not parts[2].isdigit() or parts[3] not in LAYER_ROLES:
        raise PackError(f"tensor {target!r}: the CPU runtime has no computation for it")
    return int(parts[2]), parts[3]


def parallel_of(target: str, plan: TpPlan) -> Parallel:
    if target == EMBEDDING:
        return Parallel.VOCAB if plan.embedding_split else Parallel.REPLICATED
    if target == LM_HEAD:
        return Parallel.VOCAB if plan.lm_head_split else Parallel.REPLICATED
    if target == FINAL_NORM:
        return Parallel.REPLICATED
    return LAYER_ROLES[layer_role(target)[1]]


def _split_dim(kind: Parallel, ndim: int) -> int | None:
    if kind in (Parallel.COLUMN, Parallel.VOCAB):
        return 0  # (out, in) weights and (out,) biases: output features / vocabulary rows
    if kind is Parallel.ROW:
        return 1  # (out, in): input features
    return None


def rank_shape(kind: Parallel, full_shape: tuple[int, ...], tp: int) -> tuple[int, ...]:
    """The shard shape one of `tp` ranks needs to compute `kind`-parallel with a tensor of `full_shape`."""
    dim = _split_dim(kind, len(full_shape))
    if dim is None or tp == 1:
        return tuple(full_shape)
    if dim >= len(full_shape) or full_shape[dim] % tp:
        raise PackError(f"{kind.value} tensor of shape {list(full_shape)} cannot be split across {tp} ranks")
    shape = list(full_shape)
    shape[dim] //= tp
    return tuple(shape)


def shard(array: np.ndarray, kind: Parallel, tp: int, rank: int) -> np.ndarray:
    """Rank `rank`'s block of a full tensor (for sources that hold full tensors: HF folders, mf-safetensors)."""
    dim = _split_dim(kind, array.ndim)
    if dim is None or tp == 1:
        return array
    size = array.shape[dim] // tp
    index = [slice(None)] * array.ndim
    index[dim] = slice(rank * size, (rank + 1) * size)
    return array[tuple(index)]


def expected_rank_shape(spec: TensorSpec, plan: TpPlan) -> tuple[int, ...]:
    return rank_shape(parallel_of(spec.target, plan), spec.shape, plan.tp)
