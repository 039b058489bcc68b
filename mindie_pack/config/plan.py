"""Capacity planning: weights and KV cache per NPU, and the KV blocks MindFormers will allocate.

The weights come from the same model specs the build writes (mindie_pack/models: tensor names, shapes, split
axes, stored dtypes; the builder's HF-config parser): per-rank bytes are what `build` puts in each rank's .ckpt.
So Llama's replicated embedding and lm_head (vocab_emb_dp, the default), float32 norms, Baichuan2's float16
NormHead and the stored dtype are counted as built, and a world size the build refuses is refused here too.

The block count follows mindformers' model_runner:
    num_blocks = npu_mem_size GiB // (block_size * kv_heads/world_size * head_dim * dtype_bytes * 2 * layers)
"""

from __future__ import annotations

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
WORLD_SIZES = (1, 2, 4, 8, 16, 32)  # one server holds up to 8 (16 on 910B 16-card boxes); more spans servers


@dataclass(frozen=True)
class ModelPlan:
    """The model as `build` would write it for one world size."""

    family: str
    layers: int
    kv_heads: int
    head_dim: int
    dtype: str
    dtype_bytes: int
    world_size: int
    weight_bytes_per_rank: int
    embedding_split: bool
    lm_head_split: bool

    def kv_bytes_per_token(self) -> float:
        return 2 * self.layers * (self.kv_heads / self.world_size) * self.head_dim * self.dtype_bytes


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
    weight_bytes_per_rank: int = 0
    dtype: str = ""
    embedding_split: bool = False
    lm_head_split: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ParsedModel:
    """config.json read by the builder's parser (mindie_pack.builder.hf_model)."""

    origin: str
    family: Any  # mindie_pack.models.ModelFamily
    dims: Any  # mindie_pack.models.ModelDims


def parse_model(model: Path | dict[str, Any]) -> ParsedModel:
    """The model family and dimensions, with exactly the build's parser and refusals."""
    from mindie_pack.builder.hf_model import load_hf_model, read_json
    from mindie_pack.models import detect_family

    if isinstance(model, Path) and model.is_dir():
        hf = load_hf_model(model)
        return ParsedModel(str(hf.config_path), hf.family, hf.dims)
    if isinstance(model, Path):
        if not model.is_file():
            raise PackError(f"{model}: not found (pass a model directory or an HF config.json)")
        config, origin = read_json(model), str(model)
    else:
        config, origin = model, "config.json"
    family = detect_family(config, origin)
    try:
        dims = family.dims(config)
    except PackError as exc:
        raise PackError(str(exc).replace("config.json:", f"{origin}:", 1)) from None
    return ParsedModel(origin, family, dims)


def _dtype(parsed: ParsedModel, dtype: str | None) -> Any:
    from mindie_pack.weights.dtypes import target_dtype  # the build's rule (builder.hf_model.resolve_dtype)

    return target_dtype(dtype, parsed.dims.torch_dtype, parsed.origin)


def model_plan(parsed: ParsedModel, world_size: int, *, dtype: str | None = None,
               vocab_emb_dp: bool | None = None) -> ModelPlan:
    """Per-rank weight bytes = the sum over the build's tensor specs of their rank shapes x stored dtype."""
    param_dtype = _dtype(parsed, dtype)
    try:
        tp_plan = parsed.family.plan_tp(parsed.dims, world_size, vocab_emb_dp)
    except PackError as exc:  # the build's refusal, in the plan's words
        raise PackError(str(exc).replace("config.json:", f"{parsed.origin}:", 1)
                        .replace(f"--tp {world_size}", f"worldSize {world_size}")) from None
    total = 0
    for spec in parsed.family.tensor_specs(parsed.dims, tp_plan, param_dtype):
        total += math.prod(spec.rank_shape(world_size)) * spec.dtype.value.itemsize
    return ModelPlan(parsed.family.name, parsed.dims.num_layers, parsed.dims.num_kv_heads, parsed.dims.head_dim,
                     param_dtype.value.name, param_dtype.value.itemsize, world_size, total,
                     tp_plan.embedding_split, tp_plan.lm_head_split)


def kv_blocks(plan: ModelPlan, npu_mem_size_gb: int, block_size: int) -> int:
    per_block = block_size * (plan.kv_heads / plan.world_size) * plan.head_dim * plan.dtype_bytes * 2 * plan.layers
    return int(npu_mem_size_gb * GIB // per_block)


_BYTES_TO_DTYPE = {4: "float32", 2: "bfloat16"}


def plan_capacity(model: Path | dict[str, Any], *, npu: str | None = None, hbm_gb: float | None = None,
                  world_size: int, npu_mem_size_gb: int, block_size: int = 128, max_seq_len: int = 2560,
                  max_batch_size: int = 200, dtype: str | None = None, dtype_bytes: int | None = None,
                  vocab_emb_dp: bool | None = None, reserve_gb: float = DEFAULT_RESERVE_GB) -> CapacityPlan:
    if dtype is None and dtype_bytes is not None:  # older callers gave a width only
        dtype = _BYTES_TO_DTYPE.get(dtype_bytes)
    parsed = parse_model(model)
    built_tp = None
    if isinstance(model, Path) and (model / "manifest.json").is_file():
        # a directory written by `build`: plan it as it was built (its dtype and vocabulary split)
        from mindie_pack.builder.model_dir import open_model_dir

        built_dir = open_model_dir(model)
        dtype = dtype or built_dir.dtype.value.name
        vocab_emb_dp = built_dir.plan.vocab_emb_dp if vocab_emb_dp is None else vocab_emb_dp
        built_tp = built_dir.tp
    if hbm_gb is None:
        key = (npu or "910B").upper()
        if key not in NPU_HBM_GB:
            raise PackError(f"--npu {npu!r}: expected one of {', '.join(NPU_HBM_GB)} (or give --hbm-gb)")
        hbm_gb = NPU_HBM_GB[key]
    built = model_plan(parsed, world_size, dtype=dtype, vocab_emb_dp=vocab_emb_dp)
    per_token = built.kv_bytes_per_token()
    blocks = kv_blocks(built, npu_mem_size_gb, block_size) if npu_mem_size_gb > 0 else 0
    tokens = blocks * block_size
    weights_gb = built.weight_bytes_per_rank / GIB
    fits = weights_gb + max(npu_mem_size_gb, 0) + reserve_gb <= hbm_gb
    plan = CapacityPlan(world_size, hbm_gb, reserve_gb, npu_mem_size_gb, block_size, round(weights_gb, 3),
                        per_token, blocks, tokens, max_seq_len, max_batch_size, fits,
                        weight_bytes_per_rank=built.weight_bytes_per_rank, dtype=built.dtype,
                        embedding_split=built.embedding_split, lm_head_split=built.lm_head_split)
    if built_tp is not None and built_tp != world_size:
        plan.errors.append(f"{model} was built for worldSize {built_tp} (--tp {built_tp}), not {world_size}: "
                           "rebuild it, or plan with that world size")
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
    plan.smallest_world_size = smallest_world_size(parsed, hbm_gb=hbm_gb, reserve_gb=reserve_gb,
                                                   max_seq_len=max_seq_len, dtype=dtype, vocab_emb_dp=vocab_emb_dp)
    if plan.smallest_world_size is None:
        possible = [n for n in WORLD_SIZES if n in parsed.family.possible_tp(parsed.dims)]
        plan.warnings.append(f"no world size the build accepts ({', '.join(map(str, possible))}) fits this model "
                             f"in {hbm_gb:g} GB per NPU")
    return plan


def smallest_world_size(parsed: ParsedModel, *, hbm_gb: float, reserve_gb: float, max_seq_len: int,
                        dtype: str | None, vocab_emb_dp: bool | None) -> int | None:
    """The smallest world size the build accepts whose weights, reserve and one maxSeqLen of KV cache
    (at least 1 GiB) fit; None when none does."""
    possible = set(parsed.family.possible_tp(parsed.dims))
    for candidate in WORLD_SIZES:
        if candidate not in possible:
            continue
        try:
            built = model_plan(parsed, candidate, dtype=dtype, vocab_emb_dp=vocab_emb_dp)
        except PackError:
            continue  # e.g. Baichuan2 with a vocabulary the world size does not divide
        kv_gb = max(1.0, max_seq_len * built.kv_bytes_per_token() / GIB)
        if built.weight_bytes_per_rank / GIB + reserve_gb + kv_gb <= hbm_gb:
            return candidate
    return None
