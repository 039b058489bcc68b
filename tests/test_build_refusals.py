"""Every refusal of `build`: a one-line error naming the file/tensor/field, a non-zero exit, nothing left behind."""

from __future__ import annotations

import json
import struct
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file, save_file

from conftest import CliResult

Cli = Callable[..., CliResult]


def _refused(cli: Cli, tmp_path: Path, *args: str | Path, match: str) -> CliResult:
    out = tmp_path / "out"
    result = cli("build", *args, "--output", out)
    assert result.exit_code == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert match in lines[0], lines[0]
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []  # no staging leftovers
    return result


def _rewrite(hf_dir: Path, change: Callable[[dict[str, np.ndarray]], None]) -> Path:
    path = hf_dir / "model.safetensors"
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))
    return path


def test_unsupported_family_lists_the_supported_ones(cli: Cli, tiny_model_copy: Callable[..., Path],
                                                     tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="llama", dtype="float32")
    config = json.loads((hf_dir / "config.json").read_text())
    config.update(architectures=["GPT2LMHeadModel"], model_type="gpt2")
    (hf_dir / "config.json").write_text(json.dumps(config))
    result = _refused(cli, tmp_path, "--model", hf_dir, match="GPT2LMHeadModel")
    for family in ("Llama", "Qwen2", "Baichuan"):
        assert family in result.stderr


def test_missing_tensor_is_named(cli: Cli, tiny_model_copy: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="llama", dtype="float32")
    _rewrite(hf_dir, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    _refused(cli, tmp_path, "--model", hf_dir, match="'model.layers.1.mlp.up_proj.weight' is missing")


def test_unexpected_tensor_is_named(cli: Cli, tiny_model_copy: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="llama", dtype="float32")
    _rewrite(hf_dir, lambda t: t.update({"model.layers.2.mlp.up_proj.weight": np.zeros((128, 64), np.float32)}))
    _refused(cli, tmp_path, "--model", hf_dir, match="unexpected tensor 'model.layers.2.mlp.up_proj.weight'")


def test_shape_that_disagrees_with_config_is_named(cli: Cli, tiny_model_copy: Callable[..., Path],
                                                    tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="qwen2", dtype="float32")
    config = json.loads((hf_dir / "config.json").read_text())
    config["intermediate_size"] = 96
    (hf_dir / "config.json").write_text(json.dumps(config))
    _refused(cli, tmp_path, "--model", hf_dir, match="has shape [128, 64], expected [96, 64]")


def test_truncated_safetensors_is_named(cli: Cli, tiny_model_copy: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="llama", dtype="float32")
    path = hf_dir / "model.safetensors"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    _refused(cli, tmp_path, "--model", hf_dir, match=f"{path}: truncated safetensors file")


def test_corrupt_safetensors_header_is_named(cli: Cli, tiny_model_copy: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="llama", dtype="float32")
    path = hf_dir / "model.safetensors"
    data = bytearray(path.read_bytes())
    data[8:12] = b"\xff\xfe{]"
    path.write_bytes(bytes(data))
    _refused(cli, tmp_path, "--model", hf_dir, match=f"{path}: corrupt safetensors header")


def test_unknown_dtype_is_named(cli: Cli, tiny_model_copy: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="llama", dtype="float32")
    path = hf_dir / "model.safetensors"
    data = path.read_bytes()
    (header_len,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + header_len])
    header["model.norm.weight"]["dtype"] = "U32"
    new_header = json.dumps(header, separators=(",", ":")).encode().ljust(header_len)
    assert len(new_header) == header_len
    path.write_bytes(data[:8] + new_header + data[8 + header_len:])
    _refused(cli, tmp_path, "--model", hf_dir, match="tensor 'model.norm.weight' has unsupported dtype 'U32'")


@pytest.mark.parametrize(("tp", "field"), [(3, "num_attention_heads (4)"), (4, "num_key_value_heads (2)")])
def test_tp_that_does_not_divide_the_heads_names_the_numbers(tp: int, field: str, cli: Cli,
                                                             tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    result = _refused(cli, tmp_path, "--model", tiny_models(family="llama"), "--tp", str(tp),
                      match=f"--tp {tp} must divide {field}")
    assert "possible tp values: 1, 2" in result.stderr


def test_unknown_dtype_option(cli: Cli, tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    _refused(cli, tmp_path, "--model", tiny_models(family="llama"), "--dtype", "int8", match="--dtype 'int8'")


def test_missing_config_json(cli: Cli, tmp_path: Path) -> None:
    hf_dir = tmp_path / "empty"
    hf_dir.mkdir()
    _refused(cli, tmp_path, "--model", hf_dir, match=f"{hf_dir / 'config.json'}: missing")


def test_baichuan2_needs_a_mindformers_checkout(cli: Cli, tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    _refused(cli, tmp_path, "--model", tiny_models(family="baichuan2", num_kv_heads=4),
             match="pass --mindformers-src DIR")


def test_mf_safetensors_refuses_non_qwen2(cli: Cli, tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    _refused(cli, tmp_path, "--model", tiny_models(family="llama"), "--profile", "mf-safetensors",
             match="supports Qwen2/Qwen2.5 only")


def test_bin_weights_without_torch_say_what_is_needed(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_models(family="llama", weight_format="bin")
    code = ("import sys; sys.modules['torch'] = None\n"
            "from mindie_pack.cli import main\n"
            f"main(['build', '--model', {str(hf_dir)!r}, '--output', {str(tmp_path / 'out')!r}])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert f"{hf_dir / 'pytorch_model.bin'}: reading pytorch_model*.bin weights needs torch" in proc.stderr
    assert not (tmp_path / "out").exists()


def test_existing_output_is_refused_without_force(cli: Cli, tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious")
    result = cli("build", "--model", tiny_models(family="llama"), "--output", out)
    assert result.exit_code == 2
    assert f"{out}: output directory already exists; pass --force to replace it" in result.stderr
    assert [p.name for p in out.iterdir()] == ["keep.txt"]


def test_force_replaces_only_after_a_successful_build(cli: Cli, tiny_model_copy: Callable[..., Path],
                                                      tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("previous build")
    broken = tiny_model_copy(family="llama", dtype="float32")
    _rewrite(broken, lambda t: t.pop("lm_head.weight"))
    failed = cli("build", "--model", broken, "--output", out, "--force")
    assert failed.exit_code == 2
    assert [p.name for p in out.iterdir()] == ["keep.txt"]  # the previous directory is untouched
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf-copy", "out"]  # no staging or backup leftovers
    ok = cli("build", "--model", tiny_models(family="llama"), "--output", out, "--force")
    assert ok.exit_code == 0, ok.stderr
    assert not (out / "keep.txt").exists()
    assert (out / "manifest.json").is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf-copy", "out"]


def test_llama3_rope_scaling_that_mindformers_rejects(cli: Cli, tiny_model_copy: Callable[..., Path],
                                                      tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="llama", dtype="float32")
    config = json.loads((hf_dir / "config.json").read_text())
    config["rope_scaling"] = {"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}
    (hf_dir / "config.json").write_text(json.dumps(config))
    _refused(cli, tmp_path, "--model", hf_dir,
             match="rope_scaling.original_max_position_embeddings (8192) must be less than max_position_embeddings "
                   "(512)")


def test_an_unloadable_tokenizer_json_is_refused_naming_it(cli: Cli, tiny_model_copy: Callable[..., Path],
                                                           tmp_path: Path) -> None:
    """The oracle is the `tokenizers` library (what loads HF fast tokenizers): a file it cannot load is refused at
    build time, for the ms and the atb profiles, and nothing is written."""
    hf = tiny_model_copy(family="qwen2")
    (hf / "tokenizer.json").write_text("{not json")
    for profile in ("mf-ckpt", "atb"):
        out = tmp_path / profile
        result = cli("build", "--model", hf, "--output", out, "--profile", profile)
        assert result.exit_code == 2, result.stderr
        assert f"{hf / 'tokenizer.json'}: the tokenizers library cannot load it" in result.stderr
        assert "Traceback" not in result.stderr and not out.exists()


def test_a_tampered_yaml_is_blamed_on_the_yaml(cli: Cli, tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "built"
    assert cli("build", "--model", tiny_models(family="qwen2"), "--output", out, "--tp", "2").exit_code == 0
    (yaml_path,) = out.glob("*.yaml")
    original = yaml_path.read_text()
    for value, expected in (("4", "parallel_config.model_parallel 4 does not fit the model"),
                            ("1", "parallel_config.model_parallel is 1, but the directory was built for tp 2")):
        yaml_path.write_text(original.replace("model_parallel: 2", f"model_parallel: {value}"))
        result = cli("verify", out)
        assert result.exit_code == 2, result.stderr
        assert result.stderr.startswith(f"error: {yaml_path}: {expected}"), result.stderr
        assert "config.json" not in result.stderr.splitlines()[0].split(":")[0]
