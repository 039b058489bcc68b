"""`build --profile atb|torch`: the HF folder for MindIE's atb/torch backends, checked against the safetensors
library and torch (independent of our reader and casts), and its refusals."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.options import BuildOptions
from mindie_pack.builder.verify import verify_model_dir

from conftest import CliResult

Cli = Callable[..., CliResult]


def _load_all(folder: Path) -> dict[str, torch.Tensor]:
    tensors: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        tensors.update(load_file(str(file)))
    return tensors


def test_same_dtype_links_when_mode_and_owner_fit_else_copies(tiny_model_copy: Callable[..., Path],
                                                              tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="qwen2", shards=2)
    first, second = sorted(hf_dir.glob("*.safetensors"))
    os.chmod(first, 0o640)
    os.chmod(second, 0o644)
    out = tmp_path / "atb"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, profile="atb"))
    assert os.path.samefile(out / first.name, first)
    assert not os.path.samefile(out / second.name, second)
    assert stat.S_IMODE(second.stat().st_mode) == 0o644  # the source keeps its mode
    for path in [out, *out.iterdir()]:
        assert stat.S_IMODE(path.stat().st_mode) == (0o750 if path.is_dir() else 0o640), path
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "model.safetensors.index.json"):
        assert (out / name).read_bytes() == (hf_dir / name).read_bytes(), name
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "bfloat16"
    theirs, ours = _load_all(hf_dir), _load_all(out)
    assert ours.keys() == theirs.keys() and all(torch.equal(ours[k], theirs[k]) for k in ours)
    report = verify_model_dir(out, reference=hf_dir)
    assert report.ok, report.as_dict()
    assert "hard-linked" in report.checks[-1].detail


def test_transformers5_dtype_key_gets_torch_dtype(tiny_model_copy: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="llama")
    config = json.loads((hf_dir / "config.json").read_text())
    config["dtype"] = config.pop("torch_dtype")
    (hf_dir / "config.json").write_text(json.dumps(config))
    out = tmp_path / "torch"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, profile="torch"))
    written = json.loads((out / "config.json").read_text())
    assert written["torch_dtype"] == "bfloat16" and written["dtype"] == "bfloat16"


def test_dtype_float16_converts_like_torch(tiny_model_copy: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="llama", shards=2)
    out = tmp_path / "f16"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, profile="atb", dtype="float16"))
    theirs, ours = _load_all(hf_dir), _load_all(out)
    for name, tensor in theirs.items():
        assert ours[name].dtype == torch.float16, name
        assert torch.equal(ours[name], tensor.to(torch.float16)), name
    assert json.loads((out / "config.json").read_text())["torch_dtype"] == "float16"
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == sum(t.numel() * 2 for t in theirs.values())
    assert verify_model_dir(out, reference=hf_dir).ok


def test_float16_overflow_is_refused(cli: Cli, tiny_model_copy: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="llama")
    tensors = load_file(str(hf_dir / "model.safetensors"))
    tensors["model.embed_tokens.weight"][0, 0] = 2e5
    save_file(tensors, str(hf_dir / "model.safetensors"), metadata={"format": "pt"})
    result = cli("build", "--model", hf_dir, "--output", tmp_path / "o", "--profile", "atb", "--dtype", "float16")
    assert result.exit_code == 2
    assert "'model.embed_tokens.weight'" in result.stderr and "--clamp" in result.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args", [[], ["--dtype", "float32"]])
def test_float32_is_refused_for_atb(cli: Cli, tiny_models: Callable[..., Path], tmp_path: Path,
                                    args: list[str]) -> None:
    result = cli("build", "--model", tiny_models(family="llama", dtype="float32"), "--output", tmp_path / "o",
                 "--profile", "atb", *args)
    assert result.exit_code == 2
    assert ("torch_dtype 'float32'" if not args else "--dtype 'float32'") in result.stderr
    assert "float16 or bfloat16" in result.stderr


def test_model_type_outside_the_support_list_is_a_warning(cli: Cli, tiny_model_copy: Callable[..., Path],
                                                         tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="llama")
    config = json.loads((hf_dir / "config.json").read_text())
    config["model_type"] = "gpt_neox"
    (hf_dir / "config.json").write_text(json.dumps(config))
    result = cli("build", "--model", hf_dir, "--output", tmp_path / "o", "--profile", "atb")
    assert result.exit_code == 0, result
    assert "model_type 'gpt_neox' is not in the 3.0.0 support list" in " ".join(result.stderr.split())
