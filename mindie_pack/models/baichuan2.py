"""Baichuan2 7B/13B -> MindFormers research Baichuan7BV2ForCausalLM / Baichuan13BV2ForCausalLM
(mindspore-ckpt.md §4.2): W_pack is split into wq/wk/wv; the NormHead lm_head is stored raw (MindFormers
normalises it in-graph) and is always split by rows, whatever vocab_emb_dp says."""

from __future__ import annotations

from typing import Any

from mindie_pack.errors import PackError
from mindie_pack.models.base import ModelDims, ModelFamily, TensorSpec, TokenizerChoice, TpPlan
from mindie_pack.weights.dtypes import DType

# Baichuan2-13B (ALiBi) is told apart from 7B (RoPE) by its width: the HF configs of both say "baichuan".
_BAICHUAN2_13B_HIDDEN = 5120
_BAICHUAN1_VOCAB = 64000


class Baichuan2Family(ModelFamily):
    name = "baichuan2"
    architectures = ("BaichuanForCausalLM",)
    model_types = ("baichuan",)
    description = "Baichuan2-7B/13B (BaichuanForCausalLM)"
    default_vocab_emb_dp = True

    def dims(self, config: dict[str, Any]) -> ModelDims:
        dims = super().dims(config)
        # Baichuan (v1: baichuan-7B, Baichuan-13B) shares model_type "baichuan" but has a 64000-token vocabulary
        # and a plain lm_head; MindFormers' Baichuan2 networks would normalise it as a NormHead.
        if dims.vocab_size == _BAICHUAN1_VOCAB or "BaiChuanForCausalLM" in (config.get("architectures") or []):
            raise PackError(
                f"config.json: vocab_size {dims.vocab_size} / architectures {config.get('architectures')} is "
                "Baichuan (v1), which has no NormHead lm_head; only Baichuan2 (vocab_size 125696) is supported"
            )
        return dims

    def is_alibi(self, dims: ModelDims) -> bool:
        return dims.hidden_size == _BAICHUAN2_13B_HIDDEN

    def attention_specs(self, dims: ModelDims, layer: int, param_dtype: DType) -> list[TensorSpec]:
        h = dims.hidden_size
        source = f"model.layers.{layer}.self_attn.W_pack.weight"
        mf = f"model.layers.{layer}.attention"
        return [
            TensorSpec(f"{mf}.{name}.weight", source, (h, h), param_dtype, 0,
                       source_rows=(index * h, (index + 1) * h), source_shape=(3 * h, h))
            for index, name in enumerate(("wq", "wk", "wv"))
        ]

    def lm_head_split(self, dims: ModelDims, tp: int, vocab_emb_dp: bool) -> bool:
        return tp > 1

    def plan_tp(self, dims: ModelDims, tp: int, vocab_emb_dp: bool | None) -> TpPlan:
        plan = super().plan_tp(dims, tp, vocab_emb_dp)
        if tp > 1 and dims.vocab_size % tp:
            raise PackError(
                f"config.json: --tp {tp} must divide vocab_size ({dims.vocab_size}) for Baichuan2, whose "
                "NormHead lm_head is always split across ranks"
            )
        return plan

    def lm_head_spec(self, dims: ModelDims, plan: TpPlan, param_dtype: DType) -> TensorSpec:
        # MindFormers creates the NormHead parameter as float16 whatever param_init_type is.
        return TensorSpec("lm_head.weight", "lm_head.weight", (dims.vocab_size, dims.hidden_size), DType.FLOAT16,
                          0 if plan.lm_head_split else None)

    def arch_type(self, dims: ModelDims) -> str:
        return "Baichuan13BV2ForCausalLM" if self.is_alibi(dims) else "Baichuan7BV2ForCausalLM"

    def research_model_module(self, dims: ModelDims) -> str:
        return "baichuan2_13b" if self.is_alibi(dims) else "baichuan2_7b"

    def research_dir(self) -> str:
        return "research/baichuan2"

    def research_tokenizer(self) -> TokenizerChoice:
        return TokenizerChoice("Baichuan2Tokenizer", {"vocab_file": "tokenizer.model"}, "baichuan2_tokenizer")

    def llm_boost_model_name(self) -> str:
        return "Baichuan"
