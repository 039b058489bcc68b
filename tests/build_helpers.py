"""Helpers for the build tests: an independent oracle for names and split rules, and a stand-in MindFormers checkout."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file

# HF -> MindFormers names and split axes, written out from the reference (mindspore-ckpt.md §4, §5) rather than
# taken from mindie_pack.models, so that the tests check the implementation instead of repeating it.
_LAYER_RULES: list[tuple[str, str, int | None]] = [
    (r"self_attn\.q_proj\.(weight|bias)", r"attention.wq.\1", 0),
    (r"self_attn\.k_proj\.(weight|bias)", r"attention.wk.\1", 0),
    (r"self_attn\.v_proj\.(weight|bias)", r"attention.wv.\1", 0),
    (r"self_attn\.o_proj\.weight", "attention.wo.weight", 1),
    (r"mlp\.gate_proj\.weight", "feed_forward.w1.weight", 0),
    (r"mlp\.up_proj\.weight", "feed_forward.w3.weight", 0),
    (r"mlp\.down_proj\.weight", "feed_forward.w2.weight", 1),
    (r"input_layernorm\.weight", "attention_norm.weight", None),
    (r"post_attention_layernorm\.weight", "ffn_norm.weight", None),
]
NORM_NAMES = ("attention_norm", "ffn_norm", "norm_out")

TORCH_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def expected_tensors(
    hf_dir: Path, family: str, vocab_split: bool, dtype: str
) -> dict[str, tuple[np.ndarray, int | None]]:
    """MindFormers name -> (full tensor as float32 after the cast to the stored dtype, split axis)."""
    source: dict[str, torch.Tensor] = {}
    for file in sorted(hf_dir.glob("*.safetensors")):
        source.update(load_file(str(file)))
    out: dict[str, tuple[np.ndarray, int | None]] = {}

    def put(name: str, tensor: torch.Tensor, axis: int | None) -> None:
        stored = torch.float32 if any(n in name for n in NORM_NAMES) else TORCH_DTYPES[dtype]
        if family == "baichuan2" and name == "lm_head.weight":
            stored = torch.float16
        out[name] = (tensor.to(stored).to(torch.float32).numpy(), axis)

    for hf_name, tensor in source.items():
        if hf_name == "model.embed_tokens.weight":
            # Tied models: MindFormers points lm_head at this parameter, so it is written once (no lm_head.weight).
            put("model.tok_embeddings.embedding_weight", tensor, 0 if vocab_split else None)
            continue
        if hf_name == "model.norm.weight":
            put("model.norm_out.weight", tensor, None)
            continue
        if hf_name == "lm_head.weight":
            baichuan_split = family == "baichuan2"  # NormHead is always split by rows
            put("lm_head.weight", tensor, 0 if (vocab_split or baichuan_split) else None)
            continue
        match = re.fullmatch(r"model\.layers\.(\d+)\.(.+)", hf_name)
        assert match, hf_name
        layer, rest = match.groups()
        if rest == "self_attn.W_pack.weight":
            q, k, v = torch.chunk(tensor, 3, dim=0)
            for short, part in (("wq", q), ("wk", k), ("wv", v)):
                put(f"model.layers.{layer}.attention.{short}.weight", part, 0)
            continue
        for pattern, target, axis in _LAYER_RULES:
            if re.fullmatch(pattern, rest):
                put(f"model.layers.{layer}." + re.sub(pattern, target, rest), tensor, axis)
                break
        else:
            raise AssertionError(f"no rule for {hf_name}")
    return out


def write_mindformers_checkout(root: Path) -> Path:
    """A stand-in MindFormers source checkout with the research files the build copies (placeholders)."""
    files = {
        "research/llm_boost/llm_boost.py": "class LlmBoostForCausalLM:  # stand-in\n    pass\n",
        "research/llm_boost/llm_boost_config.py": "class LlmBoostConfig:  # stand-in\n    pass\n",
        "research/qwen2/qwen2_tokenizer.py": "class Qwen2Tokenizer:  # stand-in\n    pass\n",
        "research/baichuan2/baichuan2_7b.py": "class Baichuan7BV2ForCausalLM:  # stand-in\n    pass\n",
        "research/baichuan2/baichuan2_13b.py": "class Baichuan13BV2ForCausalLM:  # stand-in\n    pass\n",
        "research/baichuan2/baichuan2_tokenizer.py": "class Baichuan2Tokenizer:  # stand-in\n    pass\n",
    }
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root
