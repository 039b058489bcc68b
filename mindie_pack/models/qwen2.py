"""Qwen1.5 / Qwen2 / Qwen2.5 (llama architecture with q/k/v bias) -> MindFormers legacy LlamaForCausalLM."""

from __future__ import annotations

from typing import Any

from mindie_pack.models.base import ModelDims, ModelFamily, TokenizerChoice
from mindie_pack.models.llama import rope_scaling_fields


class Qwen2Family(ModelFamily):
    name = "qwen2"
    architectures = ("Qwen2ForCausalLM",)
    model_types = ("qwen2",)
    description = "Qwen1.5, Qwen2, Qwen2.5 (Qwen2ForCausalLM)"
    default_vocab_emb_dp = False  # as the official qwen1_5/qwen2 predict yamls

    def has_qkv_bias(self, config: dict[str, Any]) -> bool:
        return True  # Qwen1.5/2/2.5 always carry q/k/v bias

    def research_dir(self) -> str:
        return "research/qwen2"

    def research_tokenizer(self) -> TokenizerChoice:
        return TokenizerChoice(
            "Qwen2Tokenizer", {"vocab_file": "vocab.json", "merges_file": "merges.txt"}, "qwen2_tokenizer"
        )

    def llm_boost_model_name(self) -> str:
        return "Qwen"

    def extra_model_config(self, dims: ModelDims) -> dict[str, Any]:
        return rope_scaling_fields(dims.rope_scaling)
