"""What `build` writes besides the weights: the MindFormers yaml, metadata files, tokenizer, manifest; profiles."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import xxhash
import yaml

from mindie_pack import __version__
from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.options import BuildOptions
from mindie_pack.builder.verify import verify_model_dir

from build_helpers import write_mindformers_checkout

LLAMA31_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                "original_max_position_embeddings": 256}


def _yaml(out: Path) -> dict:
    (path,) = list(out.glob("*.yaml"))
    return yaml.safe_load(path.read_text())


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mf_ckpt_yaml_values(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_models(family="llama", rope_scaling=LLAMA31_ROPE)
    out = tmp_path / "llama31"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=2, dtype="bfloat16"))
    doc = _yaml(out)
    assert doc["load_checkpoint"] == str(out / "weights")
    assert doc["auto_trans_ckpt"] is False
    assert doc["use_parallel"] is True
    assert doc["parallel_config"]["data_parallel"] == 1
    assert doc["parallel_config"]["model_parallel"] == 2
    assert doc["parallel_config"]["pipeline_stage"] == 1
    mc = doc["model"]["model_config"]
    assert mc["type"] == "LlamaConfig"
    assert doc["model"]["arch"]["type"] == "LlamaForCausalLM"
    assert (mc["hidden_size"], mc["num_layers"], mc["num_heads"], mc["n_kv_heads"]) == (64, 2, 4, 2)
    assert (mc["vocab_size"], mc["intermediate_size"]) == (384, 128)
    assert mc["rms_norm_eps"] == 1e-6 and isinstance(mc["rms_norm_eps"], float)
    assert mc["theta"] == 500000.0
    assert mc["qkv_concat"] is False
    assert mc["use_past"] is True
    assert mc["qkv_has_bias"] is False
    assert mc["param_init_type"] == "bfloat16"
    assert mc["seq_length"] == 512  # min(max_position_embeddings, 4096)
    assert mc["extend_method"] == "LLAMA3"
    assert mc["scaling_factor"] == {"factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                    "original_max_position_embeddings": 256}
    tokenizer = doc["processor"]["tokenizer"]
    assert tokenizer["type"] == "LlamaTokenizerFast"
    assert tokenizer["tokenizer_file"] == str(out / "tokenizer.json")
    assert Path(tokenizer["tokenizer_file"]).is_file()


def test_single_card_yaml_is_not_parallel(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "one"
    build_model_dir(BuildOptions(model_dir=tiny_models(family="llama"), output_dir=out, seq_length=256))
    doc = _yaml(out)
    assert doc["use_parallel"] is False
    assert doc["parallel_config"]["model_parallel"] == 1
    assert doc["model"]["model_config"]["seq_length"] == 256
    assert doc["model"]["model_config"]["extend_method"] == "None"


def test_qwen2_yaml_with_research_tokenizer(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    src = write_mindformers_checkout(tmp_path / "mf")
    out = tmp_path / "qwen"
    build_model_dir(BuildOptions(model_dir=tiny_models(family="qwen2", tie_word_embeddings=True), output_dir=out,
                                 tp=2, mindformers_src=src))
    doc = _yaml(out)
    mc = doc["model"]["model_config"]
    assert mc["qkv_has_bias"] is True
    assert mc["tie_word_embeddings"] is True
    assert doc["parallel_config"]["vocab_emb_dp"] is False
    tokenizer = doc["processor"]["tokenizer"]
    assert tokenizer["type"] == "Qwen2Tokenizer"
    assert tokenizer["vocab_file"] == str(out / "vocab.json")
    assert tokenizer["merges_file"] == str(out / "merges.txt")
    assert (out / "qwen2_tokenizer.py").read_text() == (src / "research/qwen2/qwen2_tokenizer.py").read_text()


def test_metadata_and_tokenizer_files_are_copied(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_models(family="qwen2")
    out = tmp_path / "m"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out))
    for name in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
                 "vocab.json", "merges.txt"):
        assert (out / name).read_bytes() == (hf_dir / name).read_bytes(), name
    assert len(list(out.glob("*.yaml"))) == 1


def test_manifest_records_inputs_outputs_and_options(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_models(family="llama", shards=2)
    out = tmp_path / "m"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=2, dtype="float16", name="tiny-llama"))
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["tool"] == {"name": "mindie-pack", "version": __version__}
    assert manifest["options"]["tp"] == 2
    assert manifest["options"]["dtype"] == "float16"
    assert manifest["options"]["profile"] == "mf-ckpt"
    assert manifest["options"]["name"] == "tiny-llama"
    inputs = {Path(r["path"]).name: r for r in manifest["inputs"]}
    expected_inputs = {"config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                       "tokenizer.json"}
    assert expected_inputs <= set(inputs)
    for name in expected_inputs:
        assert inputs[name]["sha256"] == _sha(hf_dir / name)
        assert inputs[name]["size"] == (hf_dir / name).stat().st_size
    outputs = {r["path"]: r for r in manifest["outputs"]}
    on_disk = {str(p.relative_to(out)) for p in out.rglob("*") if p.is_file() and p.name != "manifest.json"}
    assert set(outputs) == on_disk
    assert manifest["format"] == 2
    for rel, record in outputs.items():  # what we wrote: XXH3-128, by the xxhash library in one call
        assert set(record) == {"path", "size", "xxh3_128"}, rel
        assert record["xxh3_128"] == xxhash.xxh3_128_hexdigest((out / rel).read_bytes()), rel
        assert record["size"] == (out / rel).stat().st_size


def test_a_format_1_manifest_still_verifies(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    """Directories built before format 2 list sha256 for every output: verify checks those, and still
    names a changed file."""
    out = tmp_path / "m"
    build_model_dir(BuildOptions(model_dir=tiny_models(family="llama"), output_dir=out, tp=2))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["format"] = 1
    manifest["outputs"] = [{"path": r["path"], "size": r["size"], "sha256": _sha(out / r["path"])}
                           for r in manifest["outputs"]]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert verify_model_dir(out).ok
    assert verify_model_dir(out, reference=tiny_models(family="llama")).ok
    ckpt = out / "weights/rank_1/checkpoint_1.ckpt"
    data = bytearray(ckpt.read_bytes())
    data[-1] ^= 1
    ckpt.write_bytes(bytes(data))
    failed = [c for c in verify_model_dir(out).checks if not c.ok]
    assert failed[0].name == "manifest" and "rank_1/checkpoint_1.ckpt: sha256 differs" in failed[0].detail


def test_verify_names_a_tampered_file(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "m"
    build_model_dir(BuildOptions(model_dir=tiny_models(family="llama"), output_dir=out))
    ckpt = out / "weights/rank_0/checkpoint_0.ckpt"
    data = bytearray(ckpt.read_bytes())
    data[-1] ^= 1
    ckpt.write_bytes(bytes(data))
    report = verify_model_dir(out)
    assert not report.ok
    failed = [c for c in report.checks if not c.ok]
    assert failed[0].name == "manifest"
    assert "weights/rank_0/checkpoint_0.ckpt" in failed[0].detail


def test_mf_safetensors_profile(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_models(family="qwen2", shards=2)
    out = tmp_path / "mcore"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=2, profile="mf-safetensors"))
    doc = _yaml(out)
    assert doc["use_legacy"] is False
    assert doc["load_ckpt_format"] == "safetensors"
    assert doc["auto_trans_ckpt"] is True
    assert doc["pretrained_model_dir"] == str(out)
    assert doc["parallel_config"]["model_parallel"] == 2
    names = sorted(p.name for p in (out / "weights").iterdir())
    assert names == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                     "model.safetensors.index.json"]
    for name in names:
        assert (out / "weights" / name).read_bytes() == (hf_dir / name).read_bytes()
    assert verify_model_dir(out, reference=hf_dir).ok


def test_mf_safetensors_hard_links_only_files_with_safe_modes(tiny_model_copy: Callable[..., Path],
                                                                tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="qwen2")
    weights = hf_dir / "model.safetensors"
    weights.chmod(0o640)
    linked = tmp_path / "linked"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=linked, profile="mf-safetensors"))
    assert os.path.samefile(linked / "weights/model.safetensors", weights)
    weights.chmod(0o664)  # group-writable: MindIE refuses it, so the build must copy instead of linking
    copied = tmp_path / "copied"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=copied, profile="mf-safetensors"))
    assert not os.path.samefile(copied / "weights/model.safetensors", weights)
    assert (copied / "weights/model.safetensors").stat().st_mode & 0o777 == 0o640


def test_llm_boost_profile_copies_files_from_the_checkout(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    src = write_mindformers_checkout(tmp_path / "mf")
    out = tmp_path / "boost"
    build_model_dir(BuildOptions(model_dir=tiny_models(family="qwen2"), output_dir=out, tp=2, profile="llm-boost",
                                 mindformers_src=src))
    doc = _yaml(out)
    mc = doc["model"]["model_config"]
    assert mc["type"] == "LlmBoostConfig"
    assert mc["llm_backend"] == "BuildIn"
    assert mc["boost_model_name"] == "Qwen"
    assert doc["model"]["arch"]["type"] == "LlmBoostForCausalLM"
    assert mc["auto_map"]["AutoModel"] == "llm_boost.LlmBoostForCausalLM"
    assert mc["auto_map"]["AutoConfig"] == "llm_boost_config.LlmBoostConfig"
    for name, rel in (("llm_boost.py", "research/llm_boost/llm_boost.py"),
                      ("llm_boost_config.py", "research/llm_boost/llm_boost_config.py"),
                      ("qwen2_tokenizer.py", "research/qwen2/qwen2_tokenizer.py")):
        assert (out / name).read_bytes() == (src / rel).read_bytes()
    assert verify_model_dir(out).ok


@pytest.mark.parametrize("missing", ["research/llm_boost/llm_boost.py", "research/llm_boost/llm_boost_config.py"])
def test_llm_boost_refuses_a_checkout_without_its_files(missing: str, tiny_models: Callable[..., Path],
                                                         tmp_path: Path) -> None:
    from mindie_pack.errors import PackError

    src = write_mindformers_checkout(tmp_path / "mf")
    (src / missing).unlink()
    with pytest.raises(PackError, match=missing.replace(".", r"\.")):
        build_model_dir(BuildOptions(model_dir=tiny_models(family="qwen2"), output_dir=tmp_path / "o",
                                     profile="llm-boost", mindformers_src=src))
    assert not (tmp_path / "o").exists()
