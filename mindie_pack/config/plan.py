"""Capacity planning: weights and KV cache per NPU, and the KV blocks MindFormers will allocate.

The block count follows mindformers' model_runner:
    num_blocks = npu_mem_size GiB // (block_size * kv_heads/world_size * head_dim * dtype_bytes * 2 * layers)
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mindie_pack.errors import PackError

GIB = 1024**3
# HBM per chip (GB as sold, GiB usable is a little less; the reserve below covers the runtime and workspace).
NPU_HBM_GB = {"910B": 64.0, "910B1": 64.0, "910B2": 64.0, "910B3": 64.0, "910B4": 32.0, "910A": 32.0, "310P": 24.0}
DEFAULT_RESERVE_GB = 3.0
DTYPE_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}


@dataclass
class ModelShape:
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    tie_embeddings: bool
    dtype_bytes: int
    qkv_bias: bool = False

    @classmethod
    def from_hf_config(cls, config: dict[str, Any], dtype_bytes: int | None = None) -> ModelShape:
        try:
            hidden = int(config["hidden_size"])
            heads = int(config["num_attention_heads"])
            return cls(
                layers=int(config["num_hidden_layers"]), hidden=hidden, heads=heads,
                kv_heads=int(config.get("num_key_value_heads") or heads),
                head_dim=int(config.get("head_dim") or hidden // heads),
                intermediate=int(config["intermediate_size"]), vocab=int(config["vocab_size"]),
                tie_embeddings=bool(config.get("tie_word_embeddings", False)),
                dtype_bytes=dtype_bytes or DTYPE_BYTES.get(str(config.get("torch_dtype", "bfloat16")), 2),
                qkv_bias=config.get("model_type") == "qwen2",
            )
        except KeyError as exc:
            raise PackError(f"config.json: missing field {exc.args[0]!r} needed for the capacity plan") from None

    def weight_bytes_per_rank(self, world_size: int) -> int:
        h, kv = self.hidden, self.kv_heads * self.head_dim
        per_layer_split = h * h * 2 + 2 * h * kv + 3 * h * self.intermediate + ((h + 2 * kv) if self.qkv_bias else 0)
        embeddings = self.vocab * h * (1 if self.tie_embeddings else 2)
        replicated = self.layers * 2 * h + h  # norms
        # Embedding and lm_head are counted as split: an upper bound is the replicated case, noted in the table.
        sharded = self.layers * per_layer_split + embeddings
        return (math.ceil(sharded / world_size) + replicated) * self.dtype_bytes

    def kv_bytes_per_token(self, world_size: int) -> float:
        return 2 * self.layers * (self.kv_heads / world_size) * self.head_dim * self.dtype_bytes


@dataclass
class CapacityPlan:
    world_size: int
    hbm_gb: float
    reserve_gb: float
    npu_mem_size_gb: int
    block_size: int
    weights_gb_per_rank: float
    kv_bytes_per_token_per_rank: float
    kv_blocks: int
    kv_tokens: int
    max_seq_len: int
    max_batch_size: int
    fits_in_hbm: bool
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    suggested_npu_mem_size_gb: int | None = None
    smallest_world_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def kv_blocks(shape: ModelShape, world_size: int, npu_mem_size_gb: int, block_size: int) -> int:
    per_block = block_size * (shape.kv_heads / world_size) * shape.head_dim * shape.dtype_bytes * 2 * shape.layers
    return int(npu_mem_size_gb * GIB // per_block)


def _load_config(source: Path) -> dict[str, Any]:
    path = source / "config.json" if source.is_dir() else source
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise PackError(f"{path}: not found (pass a model directory or an HF config.json)") from None
    except json.JSONDecodeError as exc:
        raise PackError(f"{path}: not valid JSON ({exc})") from exc


def plan_capacity(model: Path | dict[str, Any], *, npu: str | None = None, hbm_gb: float | None = None,
                  world_size: int, npu_mem_size_gb: int, block_size: int = 128, max_seq_len: int = 2560,
                  max_batch_size: int = 200, dtype_bytes: int | None = None,
                  reserve_gb: float = DEFAULT_RESERVE_GB) -> CapacityPlan:
    config = model if isinstance(model, dict) else _load_config(model)
    shape = ModelShape.from_hf_config(config, dtype_bytes)
    if hbm_gb is None:
        key = (npu or "910B").upper()
        if key not in NPU_HBM_GB:
            raise PackError(f"--npu {npu!r}: expected one of {', '.join(NPU_HBM_GB)} (or give --hbm-gb)")
        hbm_gb = NPU_HBM_GB[key]
    if shape.kv_heads % world_size and world_size % shape.kv_heads:
        raise PackError(f"worldSize {world_size} does not divide num_key_value_heads {shape.kv_heads}")
    weights = shape.weight_bytes_per_rank(world_size)
    per_token = shape.kv_bytes_per_token(world_size)
    blocks = kv_blocks(shape, world_size, npu_mem_size_gb, block_size) if npu_mem_size_gb > 0 else 0
    tokens = blocks * block_size
    weights_gb = weights / GIB
    fits = weights_gb + max(npu_mem_size_gb, 0) + reserve_gb <= hbm_gb
    plan = CapacityPlan(world_size, hbm_gb, reserve_gb, npu_mem_size_gb, block_size, round(weights_gb, 3),
                        per_token, blocks, tokens, max_seq_len, max_batch_size, fits)
    if not fits:
        plan.errors.append(f"weights {weights_gb:.1f} GiB + npuMemSize {npu_mem_size_gb} GiB + reserve "
                           f"{reserve_gb} GiB exceed {hbm_gb} GB of HBM per NPU")
    if npu_mem_size_gb > 0 and max_seq_len > tokens:
        plan.errors.append(f"maxSeqLen {max_seq_len} does not fit in the KV cache at all ({tokens} tokens in "
                           f"{blocks} blocks of {block_size})")
    elif max_batch_size * max_seq_len > tokens:
        plan.warnings.append(f"maxBatchSize x maxSeqLen = {max_batch_size * max_seq_len} tokens exceed the KV "
                             f"cache ({tokens} tokens): full batches of long requests will queue or be preempted")
    free_gb = hbm_gb - weights_gb - reserve_gb
    need_gb = math.ceil(max_batch_size * max_seq_len * per_token / GIB)
    if free_gb >= 1:
        plan.suggested_npu_mem_size_gb = max(1, min(need_gb, math.floor(free_gb)))
    for candidate in (1, 2, 4, 8, 16, 32):
        if shape.heads % candidate or (shape.kv_heads % candidate and candidate % shape.kv_heads):
            continue
        w = shape.weight_bytes_per_rank(candidate) / GIB
        if w + reserve_gb + max(1.0, max_seq_len * shape.kv_bytes_per_token(candidate) / GIB) <= hbm_gb:
            plan.smallest_world_size = candidate
            break
    return plan
