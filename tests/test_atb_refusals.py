"""Bad inputs on the atb / 3.0 path, each refused before anything starts with one line naming the field and the fix:
fp32 torch_dtype, bf16 on 310P, ms on 3.0, an unsupported model_type, wrong permissions."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mindie_pack.emulator.backends import MS_UNSUPPORTED_30, engine_refusal
from mindie_pack.emulator.install import install_emulator
from mindie_pack.tiny_model import TinyModelSpec, make_tiny_model

from conftest import CliResult

Cli = Callable[..., CliResult]


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("MINDIE_PACK_STATE_DIR", str(tmp_path / "state"))
    yield tmp_path / "state"


@pytest.fixture(scope="module")
def hf_bf16(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_model(tmp_path_factory.mktemp("hf") / "bf16", TinyModelSpec(family="llama", dtype="bfloat16"))


@pytest.fixture(scope="module")
def atb_dir(hf_bf16: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mindie_pack.builder.assemble import build_model_dir
    from mindie_pack.builder.options import BuildOptions

    out = tmp_path_factory.mktemp("built") / "atb"
    build_model_dir(BuildOptions(model_dir=hf_bf16, output_dir=out, profile="atb"))
    return out


def one_line_error(result: CliResult) -> str:
    assert result.exit_code == 2, result.stdout + result.stderr
    text = result.stderr.strip()
    assert text.startswith("error: ") and "\n" not in text and "Traceback" not in text, text
    return text


def deploy(cli: Cli, model_dir: Path, *where: str | Path) -> CliResult:
    return cli("deploy", "--model-dir", model_dir, *where, "--port", "47310", "--dry-run")


def test_float32_torch_dtype_is_refused_with_the_dtype_fix(tiny_models: Callable[..., Path], tmp_path: Path,
                                                          cli: Cli) -> None:
    hf = tiny_models(family="llama", dtype="float32")
    line = one_line_error(cli("build", "--model", hf, "-o", tmp_path / "out", "--profile", "atb"))
    assert "torch_dtype 'float32'" in line and "--dtype bfloat16" in line
    assert not (tmp_path / "out").exists()
    # The fix works: the weights are converted and config.json says so.
    assert cli("build", "--model", hf, "-o", tmp_path / "out", "--profile", "atb", "--dtype", "bfloat16").exit_code == 0
    assert json.loads((tmp_path / "out" / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_transformers_5_dtype_key_becomes_torch_dtype(tiny_model_copy: Callable[..., Path], tmp_path: Path,
                                                      cli: Cli) -> None:
    hf = tiny_model_copy(family="qwen2", dtype="bfloat16")
    config = json.loads((hf / "config.json").read_text())
    config["dtype"] = config.pop("torch_dtype")  # what transformers >= 5 saves
    (hf / "config.json").write_text(json.dumps(config))
    assert cli("build", "--model", hf, "-o", tmp_path / "out", "--profile", "torch").exit_code == 0
    written = json.loads((tmp_path / "out" / "config.json").read_text())
    assert written["torch_dtype"] == "bfloat16" and written["dtype"] == "bfloat16"


def test_float16_conversion_refuses_values_out_of_range(tiny_model_copy: Callable[..., Path], tmp_path: Path,
                                                        cli: Cli) -> None:
    import torch
    from safetensors.torch import load_file, save_file

    hf = tiny_model_copy(family="llama", dtype="bfloat16")
    tensors = load_file(str(hf / "model.safetensors"))
    tensors["model.norm.weight"][0] = 1.0e6  # representable in bfloat16, not in float16
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(hf / "model.safetensors"), metadata={"format": "pt"})
    assert torch.isfinite(tensors["model.norm.weight"]).all()
    line = one_line_error(cli("build", "--model", hf, "-o", tmp_path / "out", "--profile", "atb", "--dtype",
                              "float16"))
    assert "'model.norm.weight'" in line and "beyond float16's largest 65504" in line and "--clamp" in line
    assert not (tmp_path / "out").exists()


def test_bfloat16_on_310p_is_refused_with_the_float16_fix(atb_dir: Path, tmp_path: Path, cli: Cli) -> None:
    emu = install_emulator(tmp_path / "Ascend", mindie_version="2.3.0", backend="atb", chip="310P3", npu_count=2)
    line = one_line_error(deploy(cli, atb_dir, "--mindie-home", emu.mindie_service))
    assert "torch_dtype bfloat16" in line and "310P3" in line and "--dtype float16" in line


def test_ms_model_on_30_is_refused_with_the_atb_fix(tiny_models: Callable[..., Path], tmp_path: Path,
                                                    cli: Cli) -> None:
    hf = tiny_models(family="qwen2", dtype="float32")
    assert cli("build", "--model", hf, "-o", tmp_path / "ms", "--profile", "mf-ckpt").exit_code == 0
    emu = install_emulator(tmp_path / "Ascend", mindie_version="3.0.0")
    python = emu.mindie_service / "bin" / "python"
    line = one_line_error(deploy(cli, tmp_path / "ms", "--mindie-python", python))
    assert "backendType ms" in line and "--profile atb" in line
    # The emulated 3.0 engine refuses a config that says ms anyway, with the real engine's message.
    config = {"backendType": "ms", "modelWeightPath": str(tmp_path / "ms")}
    assert MS_UNSUPPORTED_30 in (engine_refusal(config, {"mindie_version": "3.0.0"}, tmp_path) or "")
    assert engine_refusal(config, {"mindie_version": "2.3.0"}, tmp_path) is None
    assert one_line_error(cli("emulator", "install", tmp_path / "x", "--mindie-version", "3.0.0", "--backend", "ms"))


def test_unsupported_model_type(tiny_model_copy: Callable[..., Path], atb_dir: Path, tmp_path: Path,
                                cli: Cli) -> None:
    hf = tiny_model_copy(family="llama", dtype="bfloat16")
    config = json.loads((hf / "config.json").read_text())
    config.update(model_type="not_a_model", architectures=["NotAModelForCausalLM"])
    (hf / "config.json").write_text(json.dumps(config))
    line = one_line_error(cli("build", "--model", hf, "-o", tmp_path / "out", "--profile", "atb"))
    assert "model_type 'not_a_model'" in line and "3.0.0" in line
    # Against an installed atb_llm that lacks the model's folder: refused at deploy.
    emu = install_emulator(tmp_path / "Ascend", mindie_version="3.0.0")
    site = next((emu.mindie_service / "lib").glob("python3*/site-packages"))
    shutil.rmtree(site / "atb_llm" / "models" / "llama")
    line = one_line_error(deploy(cli, atb_dir, "--mindie-python", emu.mindie_service / "bin" / "python"))
    assert "model_type 'llama'" in line and "atb_llm has no models/llama" in line


def test_wrong_permissions_are_refused_with_the_chmod(atb_dir: Path, tmp_path: Path, cli: Cli) -> None:
    model = tmp_path / "model"
    shutil.copytree(atb_dir, model)
    emu = install_emulator(tmp_path / "Ascend", mindie_version="3.0.0")
    where = ("--mindie-python", emu.mindie_service / "bin" / "python")
    os.chmod(model / "config.json", 0o644)
    line = one_line_error(deploy(cli, model, *where))
    assert f"{model / 'config.json'}: mode 644 is wider than 640" in line and "chmod 640" in line
    os.chmod(model / "config.json", 0o640)
    os.chmod(model, 0o777)
    line = one_line_error(deploy(cli, model, *where))
    assert "mode 777 is wider than 750" in line and "chmod 750" in line


def test_torch_profile_needs_30_and_tp_reaches_the_config(hf_bf16: Path, tmp_path: Path, cli: Cli) -> None:
    model = tmp_path / "torch"
    assert cli("build", "--model", hf_bf16, "-o", model, "--profile", "torch", "--tp", "2").exit_code == 0
    emu23 = install_emulator(tmp_path / "a23", mindie_version="2.3.0", backend="atb")
    line = one_line_error(deploy(cli, model, "--mindie-home", emu23.mindie_service))
    assert "--profile torch" in line and "--profile atb" in line
    emu30 = install_emulator(tmp_path / "a30", mindie_version="3.0.0", backend="torch")
    planned = cli("deploy", "--model-dir", model, "--mindie-python", emu30.mindie_service / "bin" / "python",
                  "--port", "47320", "--dry-run", "--json")
    assert planned.exit_code == 0, planned.stderr
    assert "mindie_llm_server" in json.loads(planned.stdout)["host_command"]
    # --tp 3 does not split the tiny model's 4 heads: refused at build, naming the field
    line = one_line_error(cli("build", "--model", hf_bf16, "-o", tmp_path / "tp3", "--profile", "atb", "--tp", "3"))
    assert "--tp 3" in line and "num_attention_heads" in line


def test_moe_model_type_builds_without_the_cpu_proof_and_verify_says_so(tiny_model_copy: Callable[..., Path],
                                                                         tmp_path: Path, cli: Cli) -> None:
    hf = tiny_model_copy(family="qwen2", dtype="bfloat16")
    config = json.loads((hf / "config.json").read_text())
    config.update(model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"])  # in the 3.0 atb list
    (hf / "config.json").write_text(json.dumps(config))
    built = cli("build", "--model", hf, "-o", tmp_path / "moe", "--profile", "atb")
    assert built.exit_code == 0, built.stderr
    assert "no CPU proof" in built.stderr
    report = cli("verify", tmp_path / "moe", "--json")
    assert report.exit_code == 0
    checks = {c["name"]: c for c in json.loads(report.stdout)["checks"]}
    assert "no CPU proof" in checks["cpu-proof"]["detail"]
