"""`build --profile atb|torch` outputs, checked with independent readers (safetensors, os.stat, json), and the
ways a 3.0 install is found (--mindie-home as a venv or the mindie_llm folder, --mindie-python)."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from safetensors import safe_open

from mindie_pack.emulator.install import install_emulator

from conftest import CliResult

Cli = Callable[..., CliResult]


def modes(root: Path) -> set[tuple[str, int]]:
    out = {(".", os.stat(root).st_mode & 0o777)}
    for path in root.rglob("*"):
        out.add((path.name, os.stat(path).st_mode & 0o777))
    return out


def test_atb_directory_layout_modes_and_links(tiny_model_copy: Callable[..., Path], tmp_path: Path,
                                              cli: Cli) -> None:
    hf = tiny_model_copy(family="qwen2", dtype="bfloat16")
    (hf / "tokenization_custom.py").write_text("# remote code the server may load with trustRemoteCode\n")
    os.chmod(hf / "model.safetensors", 0o640)  # already what MindIE accepts: hard-linked
    before = (hf / "model.safetensors").read_bytes()
    result = cli("build", "--model", hf, "-o", tmp_path / "out", "--profile", "atb", "--json")
    assert result.exit_code == 0, result.stderr
    out = tmp_path / "out"
    assert os.stat(out / "model.safetensors").st_ino == os.stat(hf / "model.safetensors").st_ino
    assert {m for _, m in modes(out) if _ == "."} == {0o750}
    assert all(mode == 0o640 for name, mode in modes(out) if name != ".")
    for name in ("tokenizer.json", "tokenizer_config.json", "generation_config.json", "tokenization_custom.py"):
        assert (out / name).read_bytes() == (hf / name).read_bytes()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["options"]["profile"] == "atb" and manifest["tensors"]["hard_linked"] == ["model.safetensors"]
    assert (hf / "model.safetensors").read_bytes() == before
    assert cli("verify", out, "--reference", hf).exit_code == 0

    # A source wider than 0640 is copied, and the source keeps its mode.
    os.chmod(hf / "model.safetensors", 0o644)
    assert cli("build", "--model", hf, "-o", tmp_path / "copy", "--profile", "atb").exit_code == 0
    assert os.stat(tmp_path / "copy" / "model.safetensors").st_ino != os.stat(hf / "model.safetensors").st_ino
    assert os.stat(hf / "model.safetensors").st_mode & 0o777 == 0o644


def test_float16_build_converts_every_tensor(tiny_models: Callable[..., Path], tmp_path: Path, cli: Cli) -> None:
    import torch

    hf = tiny_models(family="llama", dtype="bfloat16")
    assert cli("build", "--model", hf, "-o", tmp_path / "out", "--profile", "atb", "--dtype", "float16").exit_code == 0
    with safe_open(str(hf / "model.safetensors"), framework="pt") as src, \
            safe_open(str(tmp_path / "out" / "model.safetensors"), framework="pt") as dst:
        assert set(src.keys()) == set(dst.keys())
        for name in src.keys():  # noqa: SIM118 - safe_open is not a mapping
            assert dst.get_tensor(name).dtype == torch.float16
            assert torch.equal(dst.get_tensor(name), src.get_tensor(name).to(torch.float16))
    assert json.loads((tmp_path / "out" / "config.json").read_text())["torch_dtype"] == "float16"


def test_installed_atb_llm_decides_at_build(tiny_models: Callable[..., Path], tmp_path: Path, cli: Cli,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from mindie_pack.emulator.standin_llm import write_atb_llm

    atb_models = tmp_path / "atb-models"
    write_atb_llm(atb_models / "atb_llm", ("llama",))  # an install without qwen2
    monkeypatch.setenv("ATB_SPEED_HOME_PATH", str(atb_models))
    line = cli("build", "--model", tiny_models(family="qwen2", dtype="bfloat16"), "-o", tmp_path / "out",
               "--profile", "atb")
    assert line.exit_code == 2 and "model_type 'qwen2'" in line.stderr and "atb_llm" in line.stderr
    assert cli("build", "--model", tiny_models(family="llama", dtype="bfloat16"), "-o", tmp_path / "ok",
               "--profile", "atb").exit_code == 0


@pytest.fixture(scope="module")
def emu30(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_emulator(tmp_path_factory.mktemp("emu") / "Ascend", mindie_version="3.0.0").mindie_service


def test_30_install_found_from_venv_package_dir_or_python(emu30: Path, tiny_models: Callable[..., Path],
                                                          tmp_path: Path, cli: Cli,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDIE_PACK_STATE_DIR", str(tmp_path / "state"))
    model = tmp_path / "model"
    assert cli("build", "--model", tiny_models(family="qwen2", dtype="bfloat16"), "-o", model,
               "--profile", "atb").exit_code == 0
    package = next((emu30 / "lib").glob("python3*/site-packages/mindie_llm"))
    for where in (["--mindie-home", emu30], ["--mindie-home", package], ["--mindie-python", emu30 / "bin" / "python"]):
        result = cli("deploy", "--model-dir", model, *where, "--port", "47330", "--dry-run", "--json")
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["config_path"] == str(package / "conf" / "config.json")
    shutil.rmtree(package / "bin")
    result = cli("deploy", "--model-dir", model, "--mindie-python", emu30 / "bin" / "python", "--dry-run")
    assert result.exit_code == 2 and "mindieservice_daemon" not in result.stdout


def test_env_prints_the_atb_environment_of_30(emu30: Path, cli: Cli) -> None:
    result = cli("env", "--mindie-python", emu30 / "bin" / "python", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert not any(s.endswith("mindie-service/set_env.sh") for s in data["sourced"])  # 3.0 has none
    assert data["set"]["OMP_NUM_THREADS"] == "1" and "MINDIE_LLM_FRAMEWORK_BACKEND" not in data["set"]
