"""config render: strict templates, spec values, --set/--patch, atomic 0640 writes, backups, .diff; round trips."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.options import BuildOptions
from mindie_pack.config import default_config, render_config, validate_config, write_config
from mindie_pack.config.problems import errors
from mindie_pack.config.render import render_template
from mindie_pack.errors import PackError
from mindie_pack.spec import Spec

from conftest import CliResult

VERSIONS = ["1.0.RC3", "1.0.0", "2.0.RC1", "2.1.RC1", "2.2.RC1", "2.3.0"]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mindie_pack.tiny_model import TinyModelSpec, make_tiny_model

    root = tmp_path_factory.mktemp("render")
    hf_dir = make_tiny_model(root / "hf", TinyModelSpec(family="llama"))
    out = root / "tiny-llama"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=2, name="tiny-llama"))
    return out


def _spec(tmp_path: Path, server: dict[str, object], tp: int = 2) -> Spec:
    return Spec(tmp_path / "mindie-pack.yaml",
                {"model": {"source": "/unused", "name": "tiny-llama"}, "parallel": {"tp": tp}, "server": server})


@pytest.mark.parametrize("version", VERSIONS)
def test_render_fills_the_model_and_validates(version: str, model_dir: Path) -> None:
    config = render_config(None, model_dir=model_dir, mindie_version=version)
    model = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]
    assert model == {**model, "modelName": "tiny-llama", "modelWeightPath": str(model_dir), "worldSize": 2,
                     "backendType": "ms", "npuMemSize": 8}
    assert config["BackendConfig"]["npuDeviceIds"] == [[0, 1]]
    assert config["ServerConfig"]["httpsEnabled"] is False
    assert (config["ServerConfig"]["port"], config["ServerConfig"]["managementPort"],
            config["ServerConfig"]["metricsPort"]) == (1025, 1026, 1027)
    assert ("EnableDynamicAdjustTimeoutConfig" in config) == (version == "2.3.0")
    assert ("tokenTimeout" in config["ServerConfig"]) == version.startswith("2.")
    assert errors(validate_config(config, version=version)) == []


def test_spec_server_settings_are_used(model_dir: Path, tmp_path: Path) -> None:
    spec = _spec(tmp_path, {"port": 18025, "management_port": 18026, "metrics_port": 18027, "max_seq_len": 4096,
                            "max_input_token_len": 3072, "max_batch_size": 16, "max_prefill_batch_size": 4,
                            "npu_mem_size": 20, "mindie_version": "1.0.0"})
    config = render_config(spec, model_dir=model_dir)
    assert config["ServerConfig"]["port"] == 18025
    deploy = config["BackendConfig"]["ModelDeployConfig"]
    assert (deploy["maxSeqLen"], deploy["maxInputTokenLen"]) == (4096, 3072)
    schedule = config["BackendConfig"]["ScheduleConfig"]
    assert schedule["maxPrefillTokens"] == 8192  # default kept: already >= maxInputTokenLen
    assert (schedule["maxBatchSize"], schedule["maxPrefillBatchSize"]) == (16, 4)
    assert "LogConfig" in config and config["LogConfig"]["logLevel"] == "Info"


def test_prefill_tokens_follow_a_long_input_limit(model_dir: Path, tmp_path: Path) -> None:
    spec = _spec(tmp_path, {"max_seq_len": 16384, "max_input_token_len": 12000})
    schedule = render_config(spec, model_dir=model_dir)["BackendConfig"]["ScheduleConfig"]
    assert schedule["maxPrefillTokens"] == 12000


def test_unknown_spec_setting_is_refused(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(PackError, match="spec server.maxBatchSize: unknown setting"):
        render_config(_spec(tmp_path, {"maxBatchSize": 8}), model_dir=model_dir)


def test_strict_template_refuses_a_missing_value() -> None:
    with pytest.raises(PackError, match=r"config-2.x.json.j2: no value for 'management_ip_address' is undefined"):
        render_template("2.0.RC1", {"ip_address": "127.0.0.1"})


def test_set_and_patch_are_revalidated(model_dir: Path) -> None:
    config = render_config(None, model_dir=model_dir, sets=["ScheduleConfig.maxBatchSize=64",
                                                            "ServerConfig.openAiSupport=native"],
                           patch={"BackendConfig": {"ModelDeployConfig": {"truncation": True}},
                                  "ServerConfig": {"fullTextEnabled": None}})
    assert config["BackendConfig"]["ScheduleConfig"]["maxBatchSize"] == 64
    assert config["ServerConfig"]["openAiSupport"] == "native"
    assert config["BackendConfig"]["ModelDeployConfig"]["truncation"] is True
    assert "fullTextEnabled" not in config["ServerConfig"]
    with pytest.raises(PackError, match=r"ServerConfig.port: 80 is out of range"):
        render_config(None, model_dir=model_dir, sets=["ServerConfig.port=80"])
    with pytest.raises(PackError, match="--set ServerConfig.nope.x: no such field"):
        render_config(None, model_dir=model_dir, sets=["ServerConfig.nope.x=1"])


def test_write_is_0640_keeps_a_backup_and_a_diff(model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "conf" / "config.json"
    first = render_config(None, model_dir=model_dir, mindie_version="2.0.RC1")
    result = write_config(first, target, version="2.0.RC1")
    assert result.backup is None
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert json.loads(target.read_text()) == first
    diff = result.diff_path.read_text().splitlines()
    assert "BackendConfig.ModelDeployConfig.ModelConfig[0].backendType: \"atb\" -> \"ms\"" in diff
    assert "BackendConfig.npuDeviceIds: [[0, 1, 2, 3]] -> [[0, 1]]" in diff
    assert "ServerConfig.httpsEnabled: true -> false" in diff
    assert not any(line.startswith("ServerConfig.port:") for line in diff)
    second = render_config(None, model_dir=model_dir, mindie_version="2.0.RC1", sets=["ServerConfig.port=2025"])
    again = write_config(second, target, version="2.0.RC1")
    assert again.backup is not None and again.backup.name.startswith("config.json.")
    assert json.loads(again.backup.read_text()) == first
    assert json.loads(target.read_text())["ServerConfig"]["port"] == 2025
    assert sorted(p.name for p in target.parent.iterdir() if not p.name.endswith(".bak")) == \
        ["config.json", "config.json.diff"]


def test_default_config_is_the_shipped_one() -> None:
    default = default_config("2.3.0")
    model = default["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]
    assert (model["modelName"], model["backendType"], model["worldSize"]) == ("llama_65b", "atb", 4)
    assert default["ServerConfig"]["httpsEnabled"] is True
    assert default["EnableDynamicAdjustTimeoutConfig"] is False


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    version=st.sampled_from(VERSIONS),
    port=st.integers(1024, 65000),
    max_seq_len=st.integers(2, 65536),
    input_fraction=st.floats(0.01, 0.99),
    batch=st.integers(1, 5000),
    prefill_fraction=st.floats(0.0, 1.0),
    npu_mem=st.integers(1, 60),
    block=st.sampled_from([16, 32, 64, 128]),
)
def test_render_validate_round_trip(version: str, port: int, max_seq_len: int, input_fraction: float, batch: int,
                                    prefill_fraction: float, npu_mem: int, block: int, model_dir: Path,
                                    tmp_path: Path) -> None:
    server = {"port": port, "management_port": port + 1, "metrics_port": port + 2, "max_seq_len": max_seq_len,
              "max_input_token_len": max(1, int(max_seq_len * input_fraction)), "max_batch_size": batch,
              "max_prefill_batch_size": max(1, int(batch * prefill_fraction)), "npu_mem_size": npu_mem,
              "cache_block_size": block, "max_iter_times": max(1, max_seq_len // 2)}
    config = render_config(_spec(tmp_path, server), model_dir=model_dir, mindie_version=version)
    target = tmp_path / f"rt-{port}.json"
    write_config(config, target, version=version)
    assert json.loads(target.read_text()) == config
    assert errors(validate_config(json.loads(target.read_text()))) == []  # version detected from the shape


def test_render_cli_with_spec(model_dir: Path, tmp_path: Path, cli: Callable[..., CliResult],
                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mindie-pack.yaml").write_text(yaml.safe_dump({
        "model": {"source": "/unused", "name": "served-name", "output": str(model_dir)},
        "parallel": {"tp": 2}, "server": {"mindie_version": "2.3.0", "port": 3025}}))
    result = cli("config", "render", "-o", "conf/config.json", "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["line"] == "2.x" and summary["mindie_version"] == "2.3.0"
    written = json.loads((tmp_path / "conf/config.json").read_text())
    assert written["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["modelName"] == "served-name"
    assert written["ServerConfig"]["port"] == 3025
    validated = cli("config", "validate", "conf/config.json")
    assert validated.exit_code == 0, validated.stdout
    os.chmod(tmp_path / "conf/config.json", 0o640)
    bad = cli("config", "render", "-o", "conf/config.json", "--set", "ScheduleConfig.cacheBlockSize=256")
    assert bad.exit_code == 2
    assert "BackendConfig.ScheduleConfig.cacheBlockSize: 256 is out of range [1, 128]" in bad.stderr
    assert json.loads((tmp_path / "conf/config.json").read_text()) == written  # untouched on failure


def test_diff_and_explain_cli(model_dir: Path, tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps(render_config(None, model_dir=model_dir)))
    b.write_text(json.dumps(render_config(None, model_dir=model_dir, sets=["ScheduleConfig.maxBatchSize=80"])))
    result = cli("config", "diff", a, b)
    assert result.exit_code == 1
    assert result.stdout.strip() == "BackendConfig.ScheduleConfig.maxBatchSize: 200 -> 80"
    assert cli("config", "diff", a, a).exit_code == 0
    explained = cli("config", "explain", "npuMemSize")
    assert explained.exit_code == 0
    assert "npuMemSize: NPU KV-cache size in GB" in explained.stdout
    assert cli("config", "explain", "noSuchField").exit_code == 2


# ---- MindIE 3.0 and the atb/torch backends (issue 12 item 3) ----

def _hf_dir(root: Path, profile: str | None) -> Path:
    """A model directory as the atb profile leaves it: HF files, and a manifest naming the profile."""
    root.mkdir(parents=True)
    (root / "config.json").write_text(json.dumps({"model_type": "qwen2", "torch_dtype": "bfloat16"}))
    (root / "model.safetensors").write_bytes(b"\0" * 16)
    if profile:
        (root / "manifest.json").write_text(json.dumps({"options": {"profile": profile, "name": "tiny-qwen"}}))
    os.chmod(root, 0o750)
    return root


def test_render_3_0_layout_with_its_own_rules(tmp_path: Path) -> None:
    model = _hf_dir(tmp_path / "m", "atb")
    config = render_config(None, model_dir=model, mindie_version="3.0.0")
    server = config["ServerConfig"]
    assert server["HealthCheckConfig"] == {"npuUsageThreshold": 0}
    for removed in ("tlsPkPwd", "kmcKsfMaster", "kmcKsfStandby", "managementTlsPkPwd", "metricsTlsPkPwd"):
        assert removed not in server
    assert "interNodeTlsPkPwd" not in config["BackendConfig"]
    model_config = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]
    assert (model_config["backendType"], model_config["modelName"]) == ("atb", "tiny-qwen")
    assert config["BackendConfig"]["ModelDeployConfig"]["truncation"] == 0  # as 3.0.0 ships it
    assert [str(p) for p in validate_config(config, version="3.0.0")] == []
    # the keys match the v3.0.0 shipped config's (bar its layerwise-disaggregation samples)
    shipped = json.loads((Path(__file__).parent / "fixtures/config/published/mindie-llm-3.0.0-shipped-config.json")
                         .read_text())
    assert set(server) == {k for k in shipped["ServerConfig"] if not k.startswith("layerwise")}


def test_backend_comes_from_the_flag_then_the_profile_then_the_release(tmp_path: Path, model_dir: Path) -> None:
    def backend(**kw: object) -> str:
        config = render_config(None, **kw)  # type: ignore[arg-type]
        return str(config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["backendType"])

    atb = _hf_dir(tmp_path / "atb", "atb")
    plain = _hf_dir(tmp_path / "plain", None)
    assert backend(model_dir=atb, mindie_version="2.3.0") == "atb"  # the build profile says atb
    assert backend(model_dir=plain, mindie_version="2.3.0") == "atb"  # a plain HF folder is not an ms directory
    assert backend(model_dir=model_dir, mindie_version="2.3.0") == "ms"
    assert backend(model_dir=plain, mindie_version="3.0.0", backend="torch") == "torch"
    with pytest.raises(PackError, match="torch came with MindIE 3.0.0"):
        render_config(None, model_dir=plain, mindie_version="2.3.0", backend="torch")
    with pytest.raises(PackError, match=r'backendType "ms" \(--backend\): MindIE 3.0.0 has no MindSpore backend'):
        render_config(None, model_dir=model_dir, mindie_version="3.0.0", backend="ms")


def test_set_refuses_an_empty_or_misspelt_key(model_dir: Path) -> None:
    with pytest.raises(PackError, match="the key before '=' is empty"):
        render_config(None, model_dir=model_dir, sets=["=5"])
    with pytest.raises(PackError, match="'maxBachSize' is not a field MindIE reads here; did you mean 'maxBatchSize'"):
        render_config(None, model_dir=model_dir, sets=["ScheduleConfig.maxBachSize=5"])
    with pytest.raises(PackError, match=r"no such field in the rendered config \(at 'ServerConfg'; did you mean "
                                        "'ServerConfig'"):
        render_config(None, model_dir=model_dir, sets=["ServerConfg.port=2000"])
    config = render_config(None, model_dir=model_dir, mindie_version="2.3.0",
                           sets=["ScheduleConfig.maxNumPartialPrefills=4"])  # known to 2.3.0, absent from the template
    assert config["BackendConfig"]["ScheduleConfig"]["maxNumPartialPrefills"] == 4


def test_render_cli_backend_and_set_errors(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    model = _hf_dir(tmp_path / "m", None)
    ok = cli("config", "render", "-o", tmp_path / "out" / "config.json", "--model-dir", model, "--mindie-version",
             "3.0.0", "--json")
    assert ok.exit_code == 0, ok.stderr
    assert json.loads(ok.stdout)["backendType"] == "atb"
    bad = cli("config", "render", "-o", tmp_path / "out2" / "config.json", "--model-dir", model, "--set", "=5")
    assert bad.exit_code == 2 and "Traceback" not in bad.stderr
    assert not (tmp_path / "out2").exists()
