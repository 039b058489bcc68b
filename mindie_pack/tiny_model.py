"""Make tiny Hugging Face models (random weights, exact HF tensor names and config keys, a small trained
byte-level BPE tokenizer, or SentencePiece for Baichuan2) for the bundled example, the tests and the
benchmarks. No hub download."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mindie_pack.weights.dtypes import DType, RawTensor, cast

_CORPUS = [
    "MindIE serves large language models on Ascend NPUs.",
    "mindie-pack converts Hugging Face weights into MindSpore checkpoints.",
    "Tensor parallelism splits each weight across several cards.",
    "The quick brown fox jumps over the lazy dog. 0123456789",
    "Hello world! How are you today? I am fine, thank you.",
    "def main():\n    print('hello')\n",
    "你好，世界。昇腾推理服务。",
]
CHAT_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


@dataclass(frozen=True)
class TinyModelSpec:
    family: str = "qwen2"  # llama | qwen2 | qwen3 | baichuan2
    hidden_size: int = 64
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 128
    vocab_size: int = 384
    max_position_embeddings: int = 512
    dtype: str = "bfloat16"
    tie_word_embeddings: bool = False
    rope_scaling: dict[str, Any] | None = None
    shards: int = 1  # >1: model-XXXXX-of-YYYYY.safetensors + index
    weight_format: str = "safetensors"  # safetensors | bin
    seed: int = 0
    head_dim: int | None = None  # qwen3 only: may differ from hidden_size / num_heads (None: that quotient)
    config_overrides: dict[str, Any] | None = None  # merged into config.json last (e.g. a distill's fields)

    @property
    def resolved_head_dim(self) -> int:
        return self.head_dim or self.hidden_size // self.num_heads


def write_tokenizer(out: Path, vocab_size: int) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size - 16, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )
    tokenizer.train_from_iterator(_CORPUS * 4, trainer)
    tokenizer.save(str(out / "tokenizer.json"))
    tokenizer.model.save(str(out), None)  # vocab.json + merges.txt
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": None,
        "eos_token": "<|im_end|>",
        "pad_token": "<|endoftext|>",
        "unk_token": None,
        "model_max_length": 512,
        "chat_template": CHAT_TEMPLATE,
        "add_bos_token": False,
        "clean_up_tokenization_spaces": False,
    }, indent=2))


def write_sentencepiece_tokenizer(out: Path, vocab_size: int) -> None:
    """Baichuan2's HF layout: a SentencePiece BPE `tokenizer.model` (<unk>=0, <s>=1, </s>=2, byte fallback)."""
    import io

    import sentencepiece

    model = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 4), model_writer=model, vocab_size=vocab_size, model_type="bpe",
        byte_fallback=True, character_coverage=1.0, unk_id=0, bos_id=1, eos_id=2, pad_id=-1,
        hard_vocab_limit=False, split_digits=True, minloglevel=2,
    )
    (out / "tokenizer.model").write_bytes(model.getvalue())
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BaichuanTokenizer",
        "auto_map": {"AutoTokenizer": ["tokenization_baichuan.BaichuanTokenizer", None]},
        "bos_token": "<s>",
        "eos_token": "</s>",
        "pad_token": "<unk>",
        "unk_token": "<unk>",
        "add_bos_token": False,
        "add_eos_token": False,
        "model_max_length": 512,
        "clean_up_tokenization_spaces": False,
    }, indent=2))


def hf_config(spec: TinyModelSpec, eos: int, pad: int) -> dict[str, Any]:
    common = {
        "hidden_size": spec.hidden_size,
        "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers,
        "num_attention_heads": spec.num_heads,
        "vocab_size": spec.vocab_size,
        "rms_norm_eps": 1e-6,
        "hidden_act": "silu",
        "initializer_range": 0.02,
        "torch_dtype": spec.dtype,
        "use_cache": True,
        "bos_token_id": pad,
        "eos_token_id": eos,
        "pad_token_id": pad,
        "tie_word_embeddings": spec.tie_word_embeddings,
    }
    if spec.family == "llama":
        return {
            "architectures": ["LlamaForCausalLM"], "model_type": "llama", **common,
            "num_key_value_heads": spec.num_kv_heads, "max_position_embeddings": spec.max_position_embeddings,
            "rope_theta": 500000.0, "rope_scaling": spec.rope_scaling, "attention_bias": False,
            "mlp_bias": False, "head_dim": spec.hidden_size // spec.num_heads,
        }
    if spec.family == "qwen2":
        return {
            "architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", **common,
            "num_key_value_heads": spec.num_kv_heads, "max_position_embeddings": spec.max_position_embeddings,
            "rope_theta": 1000000.0, "use_sliding_window": False, "sliding_window": spec.max_position_embeddings,
            "max_window_layers": spec.num_layers, "attention_dropout": 0.0,
        }
    if spec.family == "baichuan2":
        if spec.num_kv_heads != spec.num_heads:
            raise ValueError("Baichuan2 has no grouped-query attention: num_kv_heads must equal num_heads")
        config = {"architectures": ["BaichuanForCausalLM"], "model_type": "baichuan", **common,
                  "model_max_length": spec.max_position_embeddings,
                  "auto_map": {"AutoConfig": "configuration_baichuan.BaichuanConfig",
                               "AutoModelForCausalLM": "modeling_baichuan.BaichuanForCausalLM"}}
        config.pop("tie_word_embeddings")
        return config
    if spec.family == "qwen3":
        return _qwen3_config(spec, common).to_dict()
    raise ValueError(f"unknown family {spec.family!r}")


def _qwen3_config(spec: TinyModelSpec, common: dict[str, Any]) -> Any:
    """transformers' own Qwen3Config, so that config.json has exactly the keys (and spelling) it writes."""
    from transformers import Qwen3Config

    fields = {k: v for k, v in common.items() if k != "torch_dtype"}
    return Qwen3Config(**fields, num_key_value_heads=spec.num_kv_heads, head_dim=spec.resolved_head_dim,
                       max_position_embeddings=spec.max_position_embeddings, attention_bias=False,
                       rope_parameters={"rope_type": "default", "rope_theta": 1000000.0}, use_sliding_window=False,
                       dtype=spec.dtype)


def _write_qwen3(out: Path, spec: TinyModelSpec, config: dict[str, Any], tensors: dict[str, RawTensor]) -> None:
    """Qwen3 through transformers: Qwen3ForCausalLM loads our random tensors and save_pretrained writes the folder
    (config.json, model.safetensors; tied models without lm_head.weight) as a transformers release would."""
    import torch
    from transformers import Qwen3Config, Qwen3ForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    torch_dtype = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[spec.dtype]
    model = Qwen3ForCausalLM(Qwen3Config.from_dict(config)).to(torch_dtype).eval()
    state = {name: _to_torch(t) for name, t in tensors.items()}
    missing, unexpected = model.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if not (spec.tie_word_embeddings and m == "lm_head.weight")]:
        raise ValueError(f"Qwen3 tiny model: missing {missing}, unexpected {unexpected}")
    model.save_pretrained(out, safe_serialization=True)


def _to_torch(tensor: RawTensor) -> Any:
    import torch

    if tensor.dtype is DType.BFLOAT16:
        return torch.from_numpy(tensor.array.view(np.int16).copy()).view(torch.bfloat16)
    return torch.from_numpy(tensor.array.copy())


def hf_tensor_shapes(spec: TinyModelSpec) -> dict[str, tuple[int, ...]]:
    h, f, v = spec.hidden_size, spec.intermediate_size, spec.vocab_size
    hd = spec.resolved_head_dim
    q, kv = spec.num_heads * hd, spec.num_kv_heads * hd
    shapes: dict[str, tuple[int, ...]] = {"model.embed_tokens.weight": (v, h)}
    for i in range(spec.num_layers):
        p = f"model.layers.{i}"
        if spec.family == "baichuan2":
            shapes[f"{p}.self_attn.W_pack.weight"] = (3 * h, h)
        else:
            shapes[f"{p}.self_attn.q_proj.weight"] = (q, h)
            shapes[f"{p}.self_attn.k_proj.weight"] = (kv, h)
            shapes[f"{p}.self_attn.v_proj.weight"] = (kv, h)
            if spec.family == "qwen2":
                shapes[f"{p}.self_attn.q_proj.bias"] = (q,)
                shapes[f"{p}.self_attn.k_proj.bias"] = (kv,)
                shapes[f"{p}.self_attn.v_proj.bias"] = (kv,)
            if spec.family == "qwen3":
                shapes[f"{p}.self_attn.q_norm.weight"] = (hd,)
                shapes[f"{p}.self_attn.k_norm.weight"] = (hd,)
        shapes[f"{p}.self_attn.o_proj.weight"] = (h, q)
        shapes[f"{p}.mlp.gate_proj.weight"] = (f, h)
        shapes[f"{p}.mlp.up_proj.weight"] = (f, h)
        shapes[f"{p}.mlp.down_proj.weight"] = (h, f)
        shapes[f"{p}.input_layernorm.weight"] = (h,)
        shapes[f"{p}.post_attention_layernorm.weight"] = (h,)
    shapes["model.norm.weight"] = (h,)
    if not spec.tie_word_embeddings:
        shapes["lm_head.weight"] = (v, h)
    return shapes


def random_weights(spec: TinyModelSpec) -> dict[str, RawTensor]:
    rng = np.random.default_rng(spec.seed)
    dtype = DType.from_name(spec.dtype)
    tensors = {}
    for name, shape in hf_tensor_shapes(spec).items():
        if name.endswith("norm.weight"):
            values = 1.0 + 0.1 * rng.standard_normal(shape)
        else:
            values = 0.08 * rng.standard_normal(shape)
        tensors[name] = cast(RawTensor(DType.FLOAT32, values.astype(np.float32)), dtype)
    return tensors


def write_safetensors(path: Path, tensors: dict[str, RawTensor]) -> None:
    from safetensors import TensorSpec, serialize_file

    arrays = {name: np.ascontiguousarray(t.array) for name, t in tensors.items()}  # kept alive while writing
    specs = {
        name: TensorSpec(dtype=tensors[name].dtype.info.name, shape=list(a.shape), data_ptr=a.ctypes.data,
                         data_len=a.nbytes)
        for name, a in arrays.items()
    }
    serialize_file(specs, str(path), metadata={"format": "pt"})


def _write_bin(path: Path, tensors: dict[str, RawTensor]) -> None:
    import torch

    torch.save({name: _to_torch(t) for name, t in tensors.items()}, path)


def write_weights(out: Path, spec: TinyModelSpec, tensors: dict[str, RawTensor]) -> None:
    names = list(tensors)
    suffix = "safetensors" if spec.weight_format == "safetensors" else "bin"
    writer = write_safetensors if suffix == "safetensors" else _write_bin
    if spec.shards <= 1:
        writer(out / ("model.safetensors" if suffix == "safetensors" else "pytorch_model.bin"), tensors)
        return
    per_shard = math.ceil(len(names) / spec.shards)
    weight_map = {}
    stem = "model" if suffix == "safetensors" else "pytorch_model"
    for index in range(spec.shards):
        file_name = f"{stem}-{index + 1:05d}-of-{spec.shards:05d}.{suffix}"
        chunk = names[index * per_shard:(index + 1) * per_shard]
        writer(out / file_name, {n: tensors[n] for n in chunk})
        weight_map.update({n: file_name for n in chunk})
    total = sum(t.array.nbytes for t in tensors.values())
    index_name = "model.safetensors.index.json" if suffix == "safetensors" else "pytorch_model.bin.index.json"
    (out / index_name).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))


def make_tiny_model(out: Path, spec: TinyModelSpec | None = None, *, force: bool = False) -> Path:
    """`place_tiny_model` returning the folder (for tests and benchmarks)."""
    place_tiny_model(out, spec, force=force)
    return out


def place_tiny_model(out: Path, spec: TinyModelSpec | None = None, *, force: bool = False) -> str | None:
    """Write the model into a temporary sibling folder and rename it into place: a failure leaves nothing.

    An existing non-empty `out` is refused (ValueError), or with `force` renamed to `out.bak-TIMESTAMP`
    first; the backup's name is returned."""
    import os
    import shutil
    import tempfile
    import time

    spec = spec or TinyModelSpec()
    backup: str | None = None
    if out.exists() or out.is_symlink():
        if out.is_dir() and not out.is_symlink() and not any(out.iterdir()):
            out.rmdir()
        elif not force:
            raise ValueError(f"{out}: already exists; refusing to overwrite it (pass --force to back it up first)")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    try:
        _write_tiny_model(staging, spec)
        if out.exists() or out.is_symlink():
            backup = f"{out}.bak-{time.strftime('%Y%m%d-%H%M%S')}"
            os.rename(out, backup)
        os.rename(staging, out)
        os.chmod(out, 0o755)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return backup


def _write_tiny_model(out: Path, spec: TinyModelSpec) -> Path:
    if spec.family == "baichuan2":
        write_sentencepiece_tokenizer(out, spec.vocab_size)
        bos, eos, pad = 1, 2, 0
        eos_ids: list[int] = [eos]
    else:
        write_tokenizer(out, spec.vocab_size)
        vocab = json.loads((out / "tokenizer.json").read_text())["model"]["vocab"]
        eos, pad = vocab["<|im_end|>"], vocab["<|endoftext|>"]
        bos, eos_ids = pad, [eos, pad]
    config = hf_config(spec, eos, pad)
    config["bos_token_id"] = bos
    config.update(spec.config_overrides or {})
    if spec.family == "qwen3":
        if spec.shards != 1 or spec.weight_format != "safetensors":
            raise ValueError("qwen3 tiny models are written by transformers' save_pretrained: one safetensors file")
        _write_qwen3(out, spec, config, random_weights(spec))
    else:
        (out / "config.json").write_text(json.dumps(config, indent=2))
        write_weights(out, spec, random_weights(spec))
    (out / "generation_config.json").write_text(json.dumps(
        {"bos_token_id": bos, "eos_token_id": eos_ids, "pad_token_id": pad, "do_sample": False}, indent=2))
    return out
