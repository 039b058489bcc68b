"""Llama 2 / 3 / 3.1 (incl. rope_scaling llama3) -> MindFormers legacy LlamaForCausalLM."""

from __future__ import annotations

from typing import Any

from mindie_pack.errors import PackError
from mindie_pack.models.base import ModelDims, ModelFamily


class LlamaFamily(ModelFamily):
    name = "llama"
    architectures = ("LlamaForCausalLM",)
    model_types = ("llama",)
    description = "Llama 2, Llama 3, Llama 3.1 (LlamaForCausalLM)"
    default_vocab_emb_dp = True  # as the official llama2/llama3_1 predict yamls

    def llm_boost_model_name(self) -> str:
        return "Llama"

    def extra_model_config(self, dims: ModelDims) -> dict[str, Any]:
        fields = rope_scaling_fields(dims.rope_scaling)
        scaling = fields["scaling_factor"]
        if fields["extend_method"] == "LLAMA3" and \
                scaling["original_max_position_embeddings"] >= dims.max_position_embeddings:
            # MindFormers' FreqsMgr raises this at network build time, i.e. minutes into a MindIE start.
            raise PackError(
                f"config.json: rope_scaling.original_max_position_embeddings "
                f"({scaling['original_max_position_embeddings']}) must be less than max_position_embeddings "
                f"({dims.max_position_embeddings}) for MindFormers' llama3 rope scaling"
            )
        return fields


def rope_scaling_fields(rope_scaling: dict[str, Any] | None) -> dict[str, Any]:
    """HF rope_scaling -> MindFormers extend_method/scaling_factor (mindspore-ckpt.md §5.3)."""
    if not rope_scaling:
        return {"extend_method": "None", "scaling_factor": 1.0}
    kind = rope_scaling.get("rope_type") or rope_scaling.get("type")
    factor = float(rope_scaling.get("factor", 1.0))
    if kind == "llama3":
        return {
            "extend_method": "LLAMA3",
            "scaling_factor": {
                "factor": factor,
                "low_freq_factor": float(rope_scaling.get("low_freq_factor", 1.0)),
                "high_freq_factor": float(rope_scaling.get("high_freq_factor", 4.0)),
                "original_max_position_embeddings": int(rope_scaling.get("original_max_position_embeddings", 8192)),
            },
        }
    if kind == "linear":
        return {"extend_method": "linear", "scaling_factor": {"factor": factor}}
    if kind == "dynamic":
        return {"extend_method": "DYNAMIC_NTK", "scaling_factor": {"factor": factor}}
    if kind == "default":
        return {"extend_method": "None", "scaling_factor": 1.0}
    raise PackError(
        f"config.json: rope_scaling type {kind!r} is not supported (expected llama3, linear, dynamic or none)"
    )
