"""Render the MindFormers predict yaml for a model directory (templates/mindformers/*.yaml.j2)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
import yaml

from mindie_pack import __version__
from mindie_pack.builder.hf_model import HFModel
from mindie_pack.builder.tokenizer import TokenizerPlan
from mindie_pack.errors import PackError
from mindie_pack.models import TpPlan
from mindie_pack.resources import template_dir
from mindie_pack.weights.dtypes import DType

DEFAULT_SEQ_LENGTH = 4096
DEFAULT_MAX_DEVICE_MEMORY = "58GB"  # 910B: 64 GB HBM less what CANN and the runtime keep


@dataclass(frozen=True)
class YamlInputs:
    model: HFModel
    plan: TpPlan
    dtype: DType
    profile: str
    model_name: str
    final_dir: Path  # where the model directory will live (absolute paths in the yaml point there)
    weights_dir: Path
    tokenizer: TokenizerPlan
    seq_length: int
    generation_config: dict[str, Any] | None


def resolve_seq_length(requested: int | None, model: HFModel) -> int:
    limit = model.dims.max_position_embeddings
    if requested is None:
        return min(limit, DEFAULT_SEQ_LENGTH)
    if requested > limit:
        raise PackError(
            f"--seq-length {requested} exceeds max_position_embeddings ({limit}) in {model.config_path}"
        )
    return requested


def _eos(inputs: YamlInputs) -> int | list[int] | None:
    generation = inputs.generation_config or {}
    return generation.get("eos_token_id", inputs.model.dims.eos_token_id)


def legacy_model_config(inputs: YamlInputs) -> dict[str, Any]:
    dims, dtype = inputs.model.dims, inputs.dtype.info.name
    config: dict[str, Any] = {
        "batch_size": 1,
        "seq_length": inputs.seq_length,
        "hidden_size": dims.hidden_size,
        "num_layers": dims.num_layers,
        "num_heads": dims.num_heads,
        "n_kv_heads": dims.num_kv_heads if dims.num_kv_heads != dims.num_heads else None,
        "vocab_size": dims.vocab_size,
        "intermediate_size": dims.intermediate_size,
        "max_position_embedding": dims.max_position_embeddings,
        "rms_norm_eps": dims.rms_norm_eps,
        "theta": dims.rope_theta,
        "qkv_has_bias": dims.qkv_bias,
        "qkv_concat": False,
        "tie_word_embeddings": dims.tie_word_embeddings,
        "bos_token_id": dims.bos_token_id,
        "eos_token_id": _eos(inputs),
        "pad_token_id": dims.pad_token_id,
        "ignore_token_id": -100,
        "compute_dtype": dtype,
        "param_init_type": dtype,
        "rotary_dtype": dtype,
        "layernorm_compute_type": "float32",
        "softmax_compute_type": "float32",
        "use_past": True,
        "use_flash_attention": True,
        "is_dynamic": True,
        "block_size": 32,
        "num_blocks": 1024,
        "offset": 0,
        "checkpoint_name_or_path": "",
        "repetition_penalty": 1.0,
        "max_decode_length": inputs.seq_length,
        "top_k": 1,
        "top_p": 1.0,
        "do_sample": False,
    }
    config.update(inputs.model.family.extra_model_config(dims))
    return {key: value for key, value in config.items() if value is not None}


def mcore_model_config(inputs: YamlInputs) -> dict[str, Any]:
    dtype = inputs.dtype.info.name
    config: dict[str, Any] = {
        "compute_dtype": dtype,
        "params_dtype": dtype,
        "layernorm_compute_dtype": "float32",
        "rotary_dtype": dtype,
        "softmax_compute_dtype": "float32",
    }
    if inputs.model.dims.qkv_bias:
        config["add_qkv_bias"] = True
    return config


def _auto_map(inputs: YamlInputs) -> dict[str, Any]:
    family, dims = inputs.model.family, inputs.model.dims
    auto_map: dict[str, Any] = {}
    if inputs.profile == "llm-boost":
        auto_map["AutoModel"] = "llm_boost.LlmBoostForCausalLM"
        auto_map["AutoConfig"] = "llm_boost_config.LlmBoostConfig"
    elif (module := family.research_model_module(dims)) is not None:
        auto_map["AutoModel"] = f"{module}.{family.arch_type(dims)}"
    if inputs.tokenizer.auto_map is not None:
        auto_map["AutoTokenizer"] = inputs.tokenizer.auto_map
    return auto_map


def template_context(inputs: YamlInputs) -> dict[str, Any]:
    tp = inputs.plan.tp
    if inputs.profile == "mf-safetensors":
        model_config = mcore_model_config(inputs)
    else:
        model_config = legacy_model_config(inputs)
    if auto_map := _auto_map(inputs):
        model_config["auto_map"] = auto_map
    tokenizer_fields: dict[str, Any] = {
        key: str(inputs.final_dir / file) for key, file in inputs.tokenizer.choice.files.items()
    }
    tokenizer_fields["model_max_length"] = inputs.seq_length
    tokenizer_fields.update(inputs.tokenizer.fields)
    research_tokenizer = inputs.tokenizer.choice.research_module is not None
    return {
        "tool_version": __version__,
        "model_name": inputs.model_name,
        "tp": tp,
        "use_parallel": tp > 1,
        "vocab_emb_dp": inputs.plan.vocab_emb_dp,
        "load_checkpoint": str(inputs.weights_dir),
        "pretrained_model_dir": str(inputs.final_dir),
        "output_dir": "./output",
        "context_mode": 1 if inputs.profile == "llm-boost" else 0,
        "max_device_memory": DEFAULT_MAX_DEVICE_MEMORY,
        "model_config": model_config,
        "arch_type": inputs.model.family.arch_type(inputs.model.dims),
        "boost_model_name": inputs.model.family.llm_boost_model_name() if inputs.profile == "llm-boost" else None,
        "tokenizer": {"type": inputs.tokenizer.choice.type, "fields": tokenizer_fields},
        "processor_type": "Qwen2Processor" if research_tokenizer and inputs.model.family.name == "qwen2"
        else "LlamaProcessor",
    }


def yaml_value(value: Any) -> str:
    """One value in YAML flow style, as PyYAML (MindFormers' reader) parses it back.

    json.dumps would not do: PyYAML reads `1e-06` as a string, it wants `1.0e-06`.
    """
    # Multi-line strings (chat templates) go double-quoted with \n escapes, so they stay on one line.
    style = '"' if isinstance(value, str) and ("\n" in value or "\t" in value) else None
    text = yaml.safe_dump(value, default_flow_style=True, allow_unicode=True, width=float("inf"), default_style=style)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def render_yaml(inputs: YamlInputs) -> str:
    environment = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_dir() / "mindformers")),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    environment.filters["yaml_value"] = yaml_value
    text = environment.get_template(f"{inputs.profile}.yaml.j2").render(template_context(inputs))
    yaml.safe_load(text)  # a template bug must fail here, not in MindIE
    return text
