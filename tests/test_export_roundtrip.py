"""HF -> build (tp 1 and 2, each ms profile) -> export: bit-exact in the stored dtype, and transformers' greedy text
from the export equals the source's (oracle: the source files themselves, read by safetensors/transformers)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from build_helpers import write_mindformers_checkout

PROMPT = "Hello world! How are you"


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update(load_file(str(file)))
    return out


def _greedy(folder: Path) -> str:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0][ids.shape[1]:])


def _bits(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes() if t.dtype != torch.bool else t.numpy().tobytes()


@pytest.mark.parametrize(("spec", "tp", "profile"), [
    ({"family": "qwen2"}, 1, "mf-ckpt"),
    ({"family": "qwen2"}, 2, "mf-ckpt"),
    ({"family": "llama", "shards": 2}, 2, "mf-ckpt"),
    ({"family": "llama", "tie_word_embeddings": True}, 2, "mf-ckpt"),
    ({"family": "qwen2", "dtype": "float16"}, 2, "mf-safetensors"),
])
def test_round_trip_is_bit_exact_and_generates_the_same_text(cli, tiny_models: Callable[..., Path], tmp_path: Path,
                                                             spec: dict[str, object], tp: int, profile: str) -> None:
    source = tiny_models(**spec)
    built, back = tmp_path / "built", tmp_path / "back"
    assert cli("build", "--model", source, "--tp", tp, "--profile", profile, "--output", built).exit_code == 0
    result = cli("export", built, "--to", "hf", "--output", back, "--json")
    assert result.exit_code == 0, result.stderr
    theirs, ours = _tensors(source), _tensors(back)
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        assert ours[name].dtype == tensor.dtype and ours[name].shape == tensor.shape, name
        assert _bits(ours[name]) == _bits(tensor), name
    assert json.loads((back / "config.json").read_text()) == json.loads((source / "config.json").read_text())
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json"):
        assert (back / name).read_bytes() == (source / name).read_bytes()
    assert _greedy(back) == _greedy(source)


def test_baichuan2_round_trip(cli, tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    source = tiny_models(family="baichuan2", num_kv_heads=4)
    checkout = write_mindformers_checkout(tmp_path / "mf")
    built, back = tmp_path / "built", tmp_path / "back"
    assert cli("build", "--model", source, "--tp", 2, "--mindformers-src", checkout, "--output", built).exit_code == 0
    assert cli("export", built, "--output", back).exit_code == 0
    theirs, ours = _tensors(source), _tensors(back)
    assert set(ours) == set(theirs)
    for name, tensor in theirs.items():
        # MindFormers declares Baichuan2's NormHead float16: that tensor went through float16 in the build.
        want = tensor.to(torch.float16).to(tensor.dtype) if name == "lm_head.weight" else tensor
        assert _bits(ours[name]) == _bits(want), name  # W_pack is wq/wk/wv stacked back in order


def test_sharded_export_with_index_loads_in_transformers(cli, tiny_models: Callable[..., Path],
                                                         tmp_path: Path) -> None:
    source = tiny_models(family="qwen2")
    built, back = tmp_path / "built", tmp_path / "back"
    assert cli("build", "--model", source, "--tp", 2, "--output", built).exit_code == 0
    assert cli("export", built, "--output", back, "--shard-bytes", 60000).exit_code == 0
    index = json.loads((back / "model.safetensors.index.json").read_text())
    files = sorted(back.glob("model-*.safetensors"))
    assert len(files) > 2 and set(index["weight_map"].values()) == {f.name for f in files}
    assert index["metadata"]["total_size"] == sum(t.numel() * t.element_size() for t in _tensors(back).values())
    assert _greedy(back) == _greedy(source)


def test_export_refuses_to_overwrite_and_keeps_the_old_output(cli, tiny_models: Callable[..., Path],
                                                              tmp_path: Path) -> None:
    source = tiny_models(family="qwen2")
    built, back = tmp_path / "built", tmp_path / "back"
    assert cli("build", "--model", source, "--output", built).exit_code == 0
    back.mkdir()
    (back / "keep.txt").write_text("mine")
    result = cli("export", built, "--output", back)
    assert result.exit_code == 2 and "--force" in result.stderr
    assert (back / "keep.txt").read_text() == "mine"
    assert cli("export", built, "--output", back, "--force").exit_code == 0
    assert not (back / "keep.txt").exists() and (back / "model.safetensors").is_file()
    result = cli("export", built, "--to", "onnx", "--output", tmp_path / "x")
    assert result.exit_code == 2 and "--to 'onnx'" in result.stderr and not (tmp_path / "x").exists()


@pytest.mark.parametrize("spec", [{"family": "qwen2"}, {"family": "llama", "rope_scaling": {
    "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 256}}])
def test_ckpt_with_a_mindformers_yaml_as_its_config(cli, tiny_models: Callable[..., Path], tmp_path: Path,
                                                    spec: dict[str, object]) -> None:
    """A model zoo .ckpt + its MindFormers yaml (here: what `build` wrote) -> HF folder equal to the original."""
    source = tiny_models(**spec)
    built, back = tmp_path / "built", tmp_path / "back"
    assert cli("build", "--model", source, "--output", built).exit_code == 0
    (yaml_path,) = built.glob("*.yaml")
    result = cli("export", built / "weights" / "rank_0" / "checkpoint_0.ckpt", "--output", back,
                 "--hf-config", yaml_path)
    assert result.exit_code == 0, result.stderr
    theirs, ours = _tensors(source), _tensors(back)
    assert set(ours) == set(theirs) and all(_bits(ours[k]) == _bits(v) for k, v in theirs.items())
    original = json.loads((source / "config.json").read_text())
    config = json.loads((back / "config.json").read_text())
    for key in ("architectures", "model_type", "hidden_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "intermediate_size", "vocab_size", "max_position_embeddings", "rope_theta",
                "rms_norm_eps", "tie_word_embeddings", "torch_dtype", "bos_token_id", "pad_token_id"):
        assert config[key] == original[key], key
    if original.get("rope_scaling"):
        assert {k: config["rope_scaling"][k] for k in original["rope_scaling"]} == original["rope_scaling"]
    assert _greedy(back) == _greedy(source)


def test_llm_boost_profile_round_trip(cli, tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    source = tiny_models(family="llama")
    checkout = write_mindformers_checkout(tmp_path / "mf")
    built, back = tmp_path / "built", tmp_path / "back"
    assert cli("build", "--model", source, "--tp", 2, "--profile", "llm-boost", "--mindformers-src", checkout,
               "--output", built).exit_code == 0
    result = cli("export", built, "--output", back, "--json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["source"] == "built (llm-boost, tp 2)"
    theirs, ours = _tensors(source), _tensors(back)
    assert set(ours) == set(theirs) and all(_bits(ours[k]) == _bits(v) for k, v in theirs.items())
