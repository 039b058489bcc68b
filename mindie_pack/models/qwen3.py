"""Qwen3 dense (0.6B-32B): Llama layout without q/k/v bias, plus per-head RMS norms on q and k (applied before
RoPE) and an explicit `head_dim` that may differ from hidden_size / num_attention_heads (Qwen3-0.6B: 1024 / 16
heads, head_dim 128). Tied embeddings up to 4B, untied from 8B.

MindIE's ms backend has no Qwen3 network from us: MindFormers serves Qwen3 only through its Mcore models, and
MindIE 3.0 serves the HF folder with the atb/torch backends (mindie-3.0-and-atb.md, model support table). So
this family is built with the atb profile only; the CPU runtime runs it straight from the HF folder.
The tensor plan below keeps the MindFormers-style target names of the other families so that the runtime sees
one naming scheme; `q_norm`/`k_norm` are replicated on every rank (they act on one head at a time).
"""

from __future__ import annotations

from typing import Any

from mindie_pack.errors import PackError
from mindie_pack.models.base import ModelDims, ModelFamily, TensorSpec, _config_int
from mindie_pack.models.llama import rope_scaling_fields
from mindie_pack.weights.dtypes import DType

_NO_MS = ("Qwen3 has no MindFormers legacy network for MindIE's ms backend; build it with --profile atb "
          "(MindIE's atb/torch backends serve the Hugging Face folder)")


class Qwen3Family(ModelFamily):
    name = "qwen3"
    architectures = ("Qwen3ForCausalLM",)
    model_types = ("qwen3",)
    description = "Qwen3 dense (Qwen3ForCausalLM; atb/torch profiles)"
    default_vocab_emb_dp = False  # as Qwen2: the vocabulary (151936) is split when tp divides it
    ms_backend = False

    def dims(self, config: dict[str, Any]) -> ModelDims:
        if config.get("use_sliding_window"):
            raise PackError("config.json: use_sliding_window is true; sliding-window attention is not supported "
                            "(Qwen3 dense checkpoints ship it false)")
        return super().dims(config)

    def explicit_head_dim(self, config: dict[str, Any], hidden: int, num_heads: int) -> int | None:
        if config.get("head_dim") is None:
            return super().explicit_head_dim(config, hidden, num_heads)
        head_dim = _config_int(config, "head_dim")
        if head_dim <= 0 or head_dim % 2:
            raise PackError(f"config.json: head_dim must be a positive even number (RoPE rotates pairs), "
                            f"got {head_dim}")
        return head_dim

    def has_qkv_bias(self, config: dict[str, Any]) -> bool:
        return bool(config.get("attention_bias", False))

    def attention_specs(self, dims: ModelDims, layer: int, param_dtype: DType) -> list[TensorSpec]:
        hd = dims.head_dim
        hf, mf = f"model.layers.{layer}.self_attn", f"model.layers.{layer}.attention"
        return super().attention_specs(dims, layer, param_dtype) + [
            TensorSpec(f"{mf}.q_norm.weight", f"{hf}.q_norm.weight", (hd,), param_dtype),
            TensorSpec(f"{mf}.k_norm.weight", f"{hf}.k_norm.weight", (hd,), param_dtype),
        ]

    def arch_type(self, dims: ModelDims) -> str:
        raise PackError(f"config.json: {_NO_MS}")

    def llm_boost_model_name(self) -> str:
        raise PackError(f"config.json: {_NO_MS}")

    def extra_model_config(self, dims: ModelDims) -> dict[str, Any]:
        return rope_scaling_fields(dims.rope_scaling)
