"""config validation: the published ms-backend config, each broken variant, file rules, model directory."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.options import BuildOptions
from mindie_pack.config import detect_version, validate_config, validate_config_file
from mindie_pack.config.problems import errors

from config_helpers import published_config, variant
from conftest import CliResult

MC = "BackendConfig.ModelDeployConfig.ModelConfig[0]"


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mindie_pack.tiny_model import TinyModelSpec, make_tiny_model

    root = tmp_path_factory.mktemp("cfg")
    hf_dir = make_tiny_model(root / "hf", TinyModelSpec(family="qwen2"))
    out = root / "model"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=1))
    return out


def _errors(data: dict[str, Any]) -> list[str]:
    return [str(p) for p in errors(validate_config(data))]


def test_published_config_validates_with_a_built_directory(model_dir: Path) -> None:
    data = published_config(model_dir)
    assert detect_version(data) == "1.0"
    assert _errors(data) == []


@pytest.mark.parametrize(("path", "value", "expected"), [
    ("BackendConfig.npuDeviceIds", [[0, 1]], "BackendConfig.npuDeviceIds[0]: lists 2 device(s) but "
                                             "ModelConfig[0].worldSize is 1"),
    ("BackendConfig.npuDeviceIds", [[0, 0]], "BackendConfig.npuDeviceIds[0]: device 0 is listed twice"),
    ("BackendConfig.ScheduleConfig.maxPrefillTokens", 1024,
     "BackendConfig.ScheduleConfig.maxPrefillTokens: 1024 is less than ModelDeployConfig.maxInputTokenLen 2048"),
    ("BackendConfig.ScheduleConfig.cacheBlockSize", 256,
     "BackendConfig.ScheduleConfig.cacheBlockSize: 256 is out of range [1, 128]"),
    ("ServerConfig.port", 80, "ServerConfig.port: 80 is out of range [1024, 65535]"),
    (f"{MC}.backendType", "vllm", f'{MC}.backendType: "vllm" is not one of "atb", "ms"'),
    (f"{MC}.modelWeightPath", "/nonexistent/model", f"{MC}.modelWeightPath: /nonexistent/model does not exist"),
    ("BackendConfig.ScheduleConfig.maxBatchSize", "200",
     'BackendConfig.ScheduleConfig.maxBatchSize: expected integer, got a string "200"'),
    ("BackendConfig.modelInstanceNumber", 2, "BackendConfig.npuDeviceIds: has 1 device list(s) but "
                                             "modelInstanceNumber is 2"),
    (f"{MC}.worldSize", 2, f"{MC}.worldSize: 2 but predict_model.yaml has parallel_config.model_parallel 1"),
    (f"{MC}.npuMemSize", 0, f"{MC}.npuMemSize: 0 is invalid: it should be within (0, 2147483647] GB or -1"),
    (f"{MC}.modelName", "-bad name", f'{MC}.modelName: "-bad name" does not match'),
    ("ServerConfig.ipAddress", "0.0.0.0", "ServerConfig.ipAddress: 0.0.0.0 is invalid: listening on all addresses "
                                          "needs ServerConfig.allowAllZeroIpListening true"),
    ("BackendConfig.multiNodesInferPort", 1025, "BackendConfig.multiNodesInferPort: 1025: Endpoint port cannot be "
                                                "equal to multiNodesInferPort"),
    ("BackendConfig.ScheduleConfig.maxPrefillBatchSize", 300,
     "BackendConfig.ScheduleConfig.maxPrefillBatchSize: 300 is greater than maxBatchSize 200"),
    ("ServerConfig.httpsEnabled", True, None),
])
def test_each_broken_variant_is_rejected_naming_its_field(model_dir: Path, path: str, value: Any,
                                                          expected: str | None) -> None:
    problems = _errors(variant(published_config(model_dir), path, value))
    if expected is None:  # httpsEnabled without an install dir: TLS files cannot be checked -> warning only
        problems = [str(p) for p in validate_config(variant(published_config(model_dir), path, value))]
        assert any("httpsEnabled" in p for p in problems)
        return
    assert any(p.startswith(expected) for p in problems), problems


def test_two_model_instances_with_one_device_list(model_dir: Path) -> None:
    data = published_config(model_dir)
    data["BackendConfig"]["modelInstanceNumber"] = 2
    models = data["BackendConfig"]["ModelDeployConfig"]["ModelConfig"]
    models.append(dict(models[0]))
    problems = _errors(data)
    assert "BackendConfig.npuDeviceIds: has 1 device list(s) but modelInstanceNumber is 2: the size of " \
           "npuDeviceIds does not equal to modelInstanceNumber" in problems
    assert any(p.startswith("BackendConfig.ModelDeployConfig.ModelConfig: has 2 elements") for p in problems)


def test_metrics_port_equal_to_business_port_on_one_address(model_dir: Path) -> None:
    data = variant(published_config(model_dir), "ServerConfig.managementIpAddress", "127.0.0.1")
    assert _errors(variant(data, "ServerConfig.metricsPort", 1026)) == []  # port != managementPort == metricsPort
    problems = _errors(variant(data, "ServerConfig.metricsPort", 1025))
    assert problems == ["ServerConfig.metricsPort: 1025 equals port but managementPort is 1026: Management or "
                        "Business or Metrics port is invalid (use all equal, or metricsPort apart from port)"]


def test_missing_compulsory_field_is_named(model_dir: Path) -> None:
    data = published_config(model_dir)
    del data["BackendConfig"]["ScheduleConfig"]["maxIterTimes"]
    assert "BackendConfig.ScheduleConfig.maxIterTimes: missing compulsory field" in _errors(data)


def test_npu_mem_auto_is_refused_for_a_legacy_llama_yaml(model_dir: Path) -> None:
    problems = _errors(variant(published_config(model_dir), f"{MC}.npuMemSize", -1))
    assert any(p.startswith(f"{MC}.npuMemSize: -1 is refused by MindFormers for LlamaForCausalLM") for p in problems)


def test_model_directory_rules(model_dir: Path, tmp_path: Path) -> None:
    link = tmp_path / "link"
    link.symlink_to(model_dir)
    assert any("is a symlink" in p for p in _errors(published_config(link)))
    os.chmod(model_dir, 0o755)
    try:
        problems = _errors(published_config(model_dir))
        assert f"{MC}.modelWeightPath: {model_dir} has mode 0755, wider than 0750: chmod 750 {model_dir}" in problems
    finally:
        os.chmod(model_dir, 0o750)
    empty = tmp_path / "empty"
    empty.mkdir(mode=0o750)
    (empty / "config.json").write_text("{}")
    assert any("has 0 .yaml files" in p for p in _errors(published_config(empty)))


def _write(path: Path, data: dict[str, Any], mode: int = 0o640) -> Path:
    path.write_text(json.dumps(data))
    os.chmod(path, mode)
    return path


def test_config_file_rules(model_dir: Path, tmp_path: Path) -> None:
    data = published_config(model_dir)
    good = _write(tmp_path / "config.json", data)
    assert [p for p in validate_config_file(good) if p.severity == "error"] == []
    wide = _write(tmp_path / "wide.json", data, 0o644)
    assert [str(p) for p in validate_config_file(wide)] == [
        f"{wide}: {wide} has mode 0644, wider than 0640: chmod 640 {wide}"]
    other_owner = validate_config_file(good, daemon_uid=os.getuid() + 1)
    assert f"is owned by uid {os.getuid()} but the daemon runs as uid {os.getuid() + 1}" in str(other_owner[0])
    link = tmp_path / "link.json"
    link.symlink_to(good)
    assert "is a symlink" in str(validate_config_file(link)[0])
    bad_json = tmp_path / "bad.json"
    bad_json.write_text("{")
    os.chmod(bad_json, 0o640)
    assert "Json file is invalid" in str(validate_config_file(bad_json)[0])
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (10 * 1024 * 1024 + 1))
    os.chmod(big, 0o640)
    assert "must be in (0, 10 MB]" in str(validate_config_file(big)[0])


def test_validate_cli_exit_codes_and_lines(model_dir: Path, tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    good = _write(tmp_path / "config.json", published_config(model_dir))
    ok = cli("config", "validate", good)
    assert ok.exit_code == 0, ok.stdout + ok.stderr
    assert f"{good}: valid (MindIE 1.0 layout)" in ok.stdout
    broken = variant(published_config(model_dir), "ServerConfig.port", 80)
    broken = variant(broken, "BackendConfig.npuDeviceIds", [[0, 0]])
    bad = _write(tmp_path / "bad.json", broken)
    result = cli("config", "validate", bad)
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert "ServerConfig.port: 80 is out of range [1024, 65535]" in lines
    assert "BackendConfig.npuDeviceIds[0]: device 0 is listed twice: npuDeviceID does not allow repetitive element" \
        in lines
    as_json = cli("config", "validate", bad, "--json")
    assert as_json.exit_code == 1
    report = json.loads(as_json.stdout)
    assert report["valid"] is False
    assert {p["path"] for p in report["problems"]} >= {"ServerConfig.port", "BackendConfig.npuDeviceIds[0]"}
