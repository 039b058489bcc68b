"""What a model family contributes: its dimensions from HF config.json, the HF -> MindFormers tensor plan
(names, shapes, split axes, stored dtypes) and its yaml fields. One source of truth for build, verify and
the runtime."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

from mindie_pack.errors import PackError
from mindie_pack.weights.dtypes import DType


@dataclass(frozen=True)
class ModelDims:
    """Architecture numbers of a decoder-only model, normalised across families."""

    hidden_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    intermediate_size: int
    vocab_size: int
    max_position_embeddings: int
    rms_norm_eps: float
    rope_theta: float
    tie_word_embeddings: bool
    qkv_bias: bool
    rope_scaling: dict[str, Any] | None = None
    bos_token_id: int | None = None
    eos_token_id: int | list[int] | None = None
    pad_token_id: int | None = None
    torch_dtype: str | None = None
    explicit_head_dim: int | None = None  # config.json `head_dim` where the family lets it differ (Qwen3)

    @property
    def head_dim(self) -> int:
        return self.explicit_head_dim or self.hidden_size // self.num_heads


@dataclass(frozen=True)
class TensorSpec:
    """One MindFormers parameter and where it comes from."""

    target: str  # MindFormers parameter name
    source: str  # HF tensor name
    shape: tuple[int, ...]  # full (unsharded) shape, as written for tp=1
    dtype: DType  # the dtype the MindFormers network declares for it
    split_axis: int | None = None  # None: replicated on every rank
    source_rows: tuple[int, int] | None = None  # take only these rows of the source (fused HF tensors)
    source_shape: tuple[int, ...] | None = None  # shape of the whole HF tensor when it differs from `shape`

    @property
    def expected_source_shape(self) -> tuple[int, ...]:
        return self.source_shape or self.shape

    def rank_shape(self, tp: int) -> tuple[int, ...]:
        if self.split_axis is None:
            return self.shape
        shape = list(self.shape)
        shape[self.split_axis] //= tp
        return tuple(shape)


@dataclass(frozen=True)
class TokenizerChoice:
    """How MindFormers should build the tokenizer: `processor.tokenizer` fields and files to copy."""

    type: str
    files: dict[str, str]  # yaml key (vocab_file, merges_file, tokenizer_file) -> file name in the model dir
    research_module: str | None = None  # e.g. "qwen2_tokenizer" (copied .py, referenced from auto_map)


@dataclass(frozen=True)
class TpPlan:
    """Sharding decisions for one build."""

    tp: int
    vocab_emb_dp: bool
    embedding_split: bool
    lm_head_split: bool
    notes: tuple[str, ...] = field(default=())


def _config_int(config: dict[str, Any], key: str, *alternatives: str) -> int:
    for name in (key, *alternatives):
        if name in config and config[name] is not None:
            value = config[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise PackError(f"config.json: field {name!r} must be an integer, got {value!r}")
            return value
    raise PackError(f"config.json: missing field {key!r}")


def rope_theta(config: dict[str, Any]) -> float:
    """`rope_theta`, or `rope_parameters.rope_theta` in folders saved by transformers >= 5."""
    parameters = config.get("rope_parameters") or {}
    return float(config.get("rope_theta") or parameters.get("rope_theta") or 10000.0)


def rope_scaling(config: dict[str, Any]) -> dict[str, Any] | None:
    """`rope_scaling`, or the scaling part of transformers >= 5's `rope_parameters` (None for plain RoPE)."""
    if config.get("rope_scaling"):
        return config["rope_scaling"]
    parameters = config.get("rope_parameters") or {}
    if parameters.get("rope_type", "default") == "default":
        return None
    return {k: v for k, v in parameters.items() if k != "rope_theta"}


class ModelFamily:
    """Base of the family modules. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    architectures: ClassVar[tuple[str, ...]]
    model_types: ClassVar[tuple[str, ...]]
    description: ClassVar[str]
    default_vocab_emb_dp: ClassVar[bool] = True
    # False: no MindFormers legacy network (served by MindIE's atb/torch backends from the HF folder only).
    ms_backend: ClassVar[bool] = True
    # HF tensors that exist in some checkpoints but have no MindFormers counterpart.
    ignored_source_suffixes: ClassVar[tuple[str, ...]] = ("rotary_emb.inv_freq",)

    # -- detection and dimensions --------------------------------------------------------------
    @classmethod
    def matches(cls, config: dict[str, Any]) -> bool:
        archs = config.get("architectures") or []
        return any(a in cls.architectures for a in archs) or config.get("model_type") in cls.model_types

    def dims(self, config: dict[str, Any]) -> ModelDims:
        num_heads = _config_int(config, "num_attention_heads")
        hidden = _config_int(config, "hidden_size")
        head_dim = self.explicit_head_dim(config, hidden, num_heads)
        return ModelDims(
            hidden_size=hidden,
            num_layers=_config_int(config, "num_hidden_layers"),
            num_heads=num_heads,
            num_kv_heads=_config_int(config, "num_key_value_heads", "num_attention_heads"),
            intermediate_size=_config_int(config, "intermediate_size"),
            vocab_size=_config_int(config, "vocab_size"),
            max_position_embeddings=_config_int(config, "max_position_embeddings", "model_max_length"),
            rms_norm_eps=float(config.get("rms_norm_eps", 1e-6)),
            rope_theta=rope_theta(config),
            tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
            qkv_bias=self.has_qkv_bias(config),
            rope_scaling=rope_scaling(config),
            bos_token_id=config.get("bos_token_id"),
            eos_token_id=config.get("eos_token_id"),
            pad_token_id=config.get("pad_token_id"),
            torch_dtype=config.get("torch_dtype") or config.get("dtype"),
            explicit_head_dim=head_dim,
        )

    def explicit_head_dim(self, config: dict[str, Any], hidden: int, num_heads: int) -> int | None:
        """None: head_dim is hidden_size / num_attention_heads (the MindFormers legacy networks' rule)."""
        if hidden % num_heads:
            raise PackError(
                f"config.json: hidden_size {hidden} is not a multiple of num_attention_heads {num_heads}"
            )
        if config.get("head_dim") not in (None, hidden // num_heads):
            raise PackError(
                f"config.json: head_dim {config['head_dim']!r} differs from hidden_size / num_attention_heads "
                f"({hidden // num_heads}), which the {self.description} network derives it from"
            )
        return None

    def has_qkv_bias(self, config: dict[str, Any]) -> bool:
        return bool(config.get("attention_bias", False))

    # -- tensor parallel -----------------------------------------------------------------------
    def plan_tp(self, dims: ModelDims, tp: int, vocab_emb_dp: bool | None) -> TpPlan:
        if tp < 1:
            raise PackError(f"--tp must be at least 1, got {tp}")
        checks = [
            ("num_attention_heads", dims.num_heads),
            ("num_key_value_heads", dims.num_kv_heads),
            ("intermediate_size", dims.intermediate_size),
            ("hidden_size", dims.hidden_size),
        ]
        for field_name, value in checks:
            if value % tp:
                raise PackError(
                    f"config.json: --tp {tp} must divide {field_name} ({value}); "
                    f"possible tp values: {', '.join(str(n) for n in self.possible_tp(dims))}"
                )
        emb_dp = self.default_vocab_emb_dp if vocab_emb_dp is None else vocab_emb_dp
        notes: list[str] = []
        vocab_divides = dims.vocab_size % tp == 0
        embedding_split = tp > 1 and not emb_dp and vocab_divides
        if tp > 1 and not emb_dp and not vocab_divides:
            notes.append(
                f"vocab_size {dims.vocab_size} is not divisible by tp {tp}: embedding and lm_head are "
                "replicated on every rank"
            )
        return TpPlan(tp, emb_dp, embedding_split, self.lm_head_split(dims, tp, emb_dp), tuple(notes))

    def lm_head_split(self, dims: ModelDims, tp: int, vocab_emb_dp: bool) -> bool:
        return tp > 1 and not vocab_emb_dp and dims.vocab_size % tp == 0

    def possible_tp(self, dims: ModelDims) -> list[int]:
        limit = math.gcd(dims.num_heads, dims.num_kv_heads, dims.intermediate_size, dims.hidden_size)
        return [n for n in range(1, limit + 1) if limit % n == 0]

    # -- tensors ---------------------------------------------------------------------------------
    def tensor_specs(self, dims: ModelDims, plan: TpPlan, param_dtype: DType) -> list[TensorSpec]:
        """The legacy MindFormers LlamaForCausalLM layout (mindspore-ckpt.md §4.1)."""
        h, hd, f, v = dims.hidden_size, dims.head_dim, dims.intermediate_size, dims.vocab_size
        q_out = dims.num_heads * hd
        norm = DType.FLOAT32  # MindFormers declares RMSNorm weights float32 whatever param_init_type is
        specs = [
            TensorSpec("model.tok_embeddings.embedding_weight", "model.embed_tokens.weight", (v, h), param_dtype,
                       0 if plan.embedding_split else None),
        ]
        for i in range(dims.num_layers):
            hf, mf = f"model.layers.{i}", f"model.layers.{i}"
            specs += self.attention_specs(dims, i, param_dtype)
            specs += [
                TensorSpec(f"{mf}.attention.wo.weight", f"{hf}.self_attn.o_proj.weight", (h, q_out), param_dtype, 1),
                TensorSpec(f"{mf}.feed_forward.w1.weight", f"{hf}.mlp.gate_proj.weight", (f, h), param_dtype, 0),
                TensorSpec(f"{mf}.feed_forward.w3.weight", f"{hf}.mlp.up_proj.weight", (f, h), param_dtype, 0),
                TensorSpec(f"{mf}.feed_forward.w2.weight", f"{hf}.mlp.down_proj.weight", (h, f), param_dtype, 1),
                TensorSpec(f"{mf}.attention_norm.weight", f"{hf}.input_layernorm.weight", (h,), norm),
                TensorSpec(f"{mf}.ffn_norm.weight", f"{hf}.post_attention_layernorm.weight", (h,), norm),
            ]
        specs.append(TensorSpec("model.norm_out.weight", "model.norm.weight", (h,), norm))
        if not dims.tie_word_embeddings:
            specs.append(self.lm_head_spec(dims, plan, param_dtype))
        return specs

    def attention_specs(self, dims: ModelDims, layer: int, param_dtype: DType) -> list[TensorSpec]:
        h, hd = dims.hidden_size, dims.head_dim
        q_out, kv_out = dims.num_heads * hd, dims.num_kv_heads * hd
        hf, mf = f"model.layers.{layer}.self_attn", f"model.layers.{layer}.attention"
        specs = [
            TensorSpec(f"{mf}.wq.weight", f"{hf}.q_proj.weight", (q_out, h), param_dtype, 0),
            TensorSpec(f"{mf}.wk.weight", f"{hf}.k_proj.weight", (kv_out, h), param_dtype, 0),
            TensorSpec(f"{mf}.wv.weight", f"{hf}.v_proj.weight", (kv_out, h), param_dtype, 0),
        ]
        if dims.qkv_bias:
            specs += [
                TensorSpec(f"{mf}.wq.bias", f"{hf}.q_proj.bias", (q_out,), param_dtype, 0),
                TensorSpec(f"{mf}.wk.bias", f"{hf}.k_proj.bias", (kv_out,), param_dtype, 0),
                TensorSpec(f"{mf}.wv.bias", f"{hf}.v_proj.bias", (kv_out,), param_dtype, 0),
            ]
        return specs

    def lm_head_spec(self, dims: ModelDims, plan: TpPlan, param_dtype: DType) -> TensorSpec:
        return TensorSpec("lm_head.weight", "lm_head.weight", (dims.vocab_size, dims.hidden_size), param_dtype,
                          0 if plan.lm_head_split else None)

    def is_ignored_source(self, name: str, dims: ModelDims) -> bool:
        if any(name.endswith(suffix) for suffix in self.ignored_source_suffixes):
            return True
        # Some tied checkpoints still carry a copy of the embedding as lm_head.weight.
        return dims.tie_word_embeddings and name == "lm_head.weight"

    # -- yaml ------------------------------------------------------------------------------------
    def arch_type(self, dims: ModelDims) -> str:
        return "LlamaForCausalLM"

    def research_model_module(self, dims: ModelDims) -> str | None:
        """Research .py module (in mindformers_src) that defines arch_type, when it is not built in."""
        return None

    def research_dir(self) -> str | None:
        """Folder under the MindFormers source checkout that holds this family's research files."""
        return None

    def research_tokenizer(self) -> TokenizerChoice | None:
        return None

    def llm_boost_model_name(self) -> str:
        raise NotImplementedError

    def extra_model_config(self, dims: ModelDims) -> dict[str, Any]:
        return {}


# -- the reverse direction: MindFormers -> HF (export and MindFormers input) ----------------------------------


@dataclass(frozen=True)
class HFTensorParts:
    """One HF tensor and the MindFormers tensors it is made of (concatenated on axis 0 in order)."""

    source: str  # HF tensor name
    shape: tuple[int, ...]  # HF shape
    parts: tuple[TensorSpec, ...]  # usually one; Baichuan2's W_pack is wq, wk, wv


def hf_tensor_parts(specs: list[TensorSpec]) -> list[HFTensorParts]:
    """Invert a family's tensor plan (the single source of the name mapping): HF tensor -> its MF pieces."""
    grouped: dict[str, list[TensorSpec]] = {}
    for spec in specs:
        grouped.setdefault(spec.source, []).append(spec)
    out = []
    for source, parts in grouped.items():
        ordered = sorted(parts, key=lambda s: s.source_rows[0] if s.source_rows else 0)
        out.append(HFTensorParts(source, ordered[0].expected_source_shape, tuple(ordered)))
    return out


def mf_to_hf_names(specs: list[TensorSpec]) -> dict[str, str]:
    """MindFormers parameter name -> the HF tensor it comes from (or is a row block of)."""
    return {spec.target: spec.source for spec in specs}
