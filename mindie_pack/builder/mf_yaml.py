"""A MindFormers yaml in place of the HF config: `--hf-config predict_or_finetune.yaml`.

The legacy `model.model_config` (LlamaConfig) carries the architecture numbers and `processor.tokenizer` names
the tokenizer files, so an HF folder (config.json, tokenizer files, tokenizer_config.json) can be put together
for the input's config and tokenizer. The field mapping is the one yaml_render.py writes (mindspore-ckpt.md §5.3),
read backwards; the family is the one of models/ whose `arch_type` and q/k/v bias reproduce the yaml's, and its
rope fields must render back to the yaml's `extend_method`/`scaling_factor`.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import yaml

from mindie_pack.errors import PackError
from mindie_pack.models import FAMILIES, ModelFamily

_HF_TOKENIZER_CLASS = {
    "Qwen2Tokenizer": "Qwen2Tokenizer", "LlamaTokenizer": "LlamaTokenizer", "LlamaTokenizerFast":
    "PreTrainedTokenizerFast", "Baichuan2Tokenizer": "LlamaTokenizer",
}
_TOKENIZER_FILE_KEYS = ("vocab_file", "merges_file", "tokenizer_file")


def is_mindformers_yaml(path: Path) -> bool:
    return path.is_file() and path.suffix in (".yaml", ".yml")


def _rope_scaling(model_config: dict[str, Any]) -> dict[str, Any] | None:
    method = str(model_config.get("extend_method", "None"))
    scaling = model_config.get("scaling_factor", 1.0)
    if method == "None":
        return None
    factors = dict(scaling) if isinstance(scaling, dict) else {"factor": float(scaling)}
    kind = {"LLAMA3": "llama3", "linear": "linear", "DYNAMIC_NTK": "dynamic"}.get(method)
    if kind is None:
        raise PackError(f"model.model_config.extend_method {method!r} cannot be expressed as an HF rope_scaling")
    return {"rope_type": kind, "type": kind, **factors}


def _family(path: Path, arch: str, config: dict[str, Any], tokenizer_type: str | None,
            vocab_emb_dp: bool | None) -> ModelFamily:
    matches = []
    for family in FAMILIES:
        if not family.ms_backend:  # a MindFormers legacy yaml is never a family without a legacy network (Qwen3)
            continue
        candidate = {**config, "architectures": [family.architectures[0]], "model_type": family.model_types[0]}
        try:
            dims = family.dims(candidate)
        except PackError:
            continue
        if family.arch_type(dims) == arch and family.has_qkv_bias(candidate) == bool(config.get("attention_bias")):
            matches.append(family)
    if not matches:
        raise PackError(f"{path}: model.arch.type {arch!r} with qkv_has_bias {config.get('attention_bias')} is not a "
                        f"supported family ({'; '.join(f.description for f in FAMILIES)})")
    # Qwen yamls say LlamaForCausalLM with q/k/v bias too: their tokenizer, or else the family's vocab_emb_dp
    # default (official Qwen yamls False, Llama True), tells them apart.
    for family in matches:
        research = family.research_tokenizer()
        if research is not None and research.type == tokenizer_type:
            return family
    for family in matches:
        if vocab_emb_dp is not None and family.default_vocab_emb_dp == vocab_emb_dp:
            return family
    return matches[0]


def hf_folder_from_mindformers_yaml(path: Path) -> Path:
    """Write config.json + tokenizer files for a MindFormers yaml into a temporary folder (removed at exit)."""
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise PackError(f"{path}: cannot read the MindFormers yaml ({exc})") from None
    model = data.get("model") or {}
    mc = model.get("model_config") or {}
    arch = (model.get("arch") or {}).get("type")
    if data.get("use_legacy") is False or not arch:
        raise PackError(f"{path}: not a legacy MindFormers yaml (needs model.arch.type and model.model_config); for "
                        "mcore models pass the HF folder with --hf-config")
    missing = [k for k in ("hidden_size", "num_layers", "num_heads", "vocab_size") if mc.get(k) is None]
    if missing:
        raise PackError(f"{path}: model.model_config.{missing[0]} is missing")
    tokenizer = (data.get("processor") or {}).get("tokenizer") or {}
    dtype = str(mc.get("param_init_type") or mc.get("compute_dtype") or "bfloat16")
    config: dict[str, Any] = {
        "hidden_size": mc["hidden_size"],
        "num_hidden_layers": mc["num_layers"],
        "num_attention_heads": mc["num_heads"],
        "num_key_value_heads": mc.get("n_kv_heads") or mc["num_heads"],
        "intermediate_size": mc.get("intermediate_size"),
        "vocab_size": mc["vocab_size"],
        "max_position_embeddings": mc.get("max_position_embedding") or mc.get("seq_length"),
        "rms_norm_eps": mc.get("rms_norm_eps", 1e-6),
        "rope_theta": mc.get("theta", 10000.0),
        "tie_word_embeddings": bool(mc.get("tie_word_embeddings", False)),
        "attention_bias": bool(mc.get("qkv_has_bias", False)),
        "bos_token_id": mc.get("bos_token_id"),
        "eos_token_id": mc.get("eos_token_id"),
        "pad_token_id": mc.get("pad_token_id"),
        "torch_dtype": dtype,
        "hidden_act": "silu",
        "rope_scaling": _rope_scaling(mc),
    }
    if config["intermediate_size"] is None:
        raise PackError(f"{path}: model.model_config.intermediate_size is missing (multiple_of/ffn_dim_multiplier "
                        "sizing is not read back; set intermediate_size)")
    vocab_emb_dp = (data.get("parallel_config") or {}).get("vocab_emb_dp")
    family = _family(path, str(arch), config, tokenizer.get("type"), vocab_emb_dp)
    config = {"architectures": [family.architectures[0]], "model_type": family.model_types[0], **config}
    if family.name == "baichuan2":
        config["model_max_length"] = config["max_position_embeddings"]
    rendered = family.extra_model_config(family.dims(config))
    for key in ("extend_method", "scaling_factor"):
        if key in rendered and key in mc and rendered[key] != mc[key]:
            raise PackError(f"{path}: model.model_config.{key} {mc[key]!r} does not round-trip through HF "
                            f"rope_scaling (got {rendered[key]!r})")
    folder = Path(tempfile.mkdtemp(prefix="mindie-pack-yaml-config-"))
    atexit.register(shutil.rmtree, folder, True)
    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    copied: list[str] = []
    for key in _TOKENIZER_FILE_KEYS:
        value = tokenizer.get(key)
        if not value:
            continue
        source = Path(str(value))
        if not source.is_absolute():
            source = path.parent / source
        if not source.is_file():
            raise PackError(f"{path}: processor.tokenizer.{key} {value} does not exist")
        shutil.copyfile(source, folder / source.name)
        copied.append(source.name)
        for sibling in ("tokenizer_config.json", "special_tokens_map.json", "generation_config.json"):
            if (source.parent / sibling).is_file() and not (folder / sibling).exists():
                shutil.copyfile(source.parent / sibling, folder / sibling)
    if not (folder / "tokenizer_config.json").exists() and tokenizer.get("type"):
        special = {k: tokenizer[k] for k in ("bos_token", "eos_token", "unk_token", "pad_token") if k in tokenizer}
        (folder / "tokenizer_config.json").write_text(json.dumps(
            {"tokenizer_class": _HF_TOKENIZER_CLASS.get(str(tokenizer["type"]), str(tokenizer["type"])),
             **special}, indent=2) + "\n")
    return folder
