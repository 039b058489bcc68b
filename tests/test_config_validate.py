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


def test_model_directory_rules_per_release(model_dir: Path, tmp_path: Path) -> None:
    """2.3.0 resolves symlinks, refuses only group/other write and skips that for root (safe_path.cpp:112-125,
    281,303-312 at 40fb0630); 3.0.0 caps the directory at 0750 and config.json at 0640, wants the daemon's user
    as owner unless root, and MINDIE_CHECK_INPUTFILES_PERMISSION=0 makes that a warning (8b4871ad). The old
    expectations here (a symlink and a 0755 directory refused whatever the release) were 3.0.0's rules applied to
    every release."""
    def errs(path: Path, version: str, uid: int, environ: dict[str, str] | None = None) -> list[str]:
        data = published_config(path)  # a 1.0 file judged by other releases: only the model directory matters here
        return [str(p) for p in errors(validate_config(data, version=version, daemon_uid=uid, environ=environ or {}))
                if p.path.endswith("modelWeightPath")]

    user = 4242  # a daemon user who owns nothing here: not root, so the checks apply
    link = tmp_path / "link"
    link.symlink_to(model_dir)
    assert errs(link, "2.3.0", os.getuid()) == []
    os.chmod(model_dir, 0o755)
    try:
        assert errs(model_dir, "2.3.0", user) == []  # 0755, owned by someone else: fine for 2.3.0
        assert f"{MC}.modelWeightPath: {model_dir} has mode 0755, wider than 0750: chmod 750 {model_dir}" \
            in errs(model_dir, "3.0.0", user)
        assert any("is owned by uid" in e for e in errs(model_dir, "3.0.0", user))
        assert errs(model_dir, "3.0.0", 0) == []  # root skips both
        assert errs(model_dir, "3.0.0", user, {"MINDIE_CHECK_INPUTFILES_PERMISSION": "0"}) == []
        os.chmod(model_dir, 0o775)
        assert f"{MC}.modelWeightPath: {model_dir} is writable by group or others (mode 0775): chmod go-w " \
               f"{model_dir}" in errs(model_dir, "2.3.0", user)
        assert errs(model_dir, "2.3.0", 0) == []
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
    assert errors(validate_config_file(good)) == []
    wide = _write(tmp_path / "wide.json", data, 0o644)
    assert [str(p) for p in errors(validate_config_file(wide))] == [
        f"{wide}: {wide} has mode 0644, wider than 0640: chmod 640 {wide}"]
    # MINDIE_CHECK_INPUTFILES_PERMISSION=0: a warning up to 2.3.0 (param_checker.cpp:35-37), still an error on
    # 3.0.0, which removed the bypass for config.json
    bypass = {"MINDIE_CHECK_INPUTFILES_PERMISSION": "0"}

    def file_level(version: str) -> list[tuple[str, str]]:
        return [(p.severity, p.message) for p in validate_config_file(wide, environ=bypass, version=version)
                if p.path == str(wide)]
    assert file_level("2.3.0") == [("warning", f"{wide} has mode 0644, wider than 0640: chmod 640 {wide}")]
    assert file_level("3.0.0") == [("error", f"{wide} has mode 0644, wider than 0640: chmod 640 {wide}")]
    other_owner = errors(validate_config_file(good, daemon_uid=os.getuid() + 1))
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
    assert f"{good}: valid (MindIE 1.0.0 rules; file shape: LogConfig.logLevel" in ok.stdout
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


# ---- published configs, judged as their release judges them (issue 10 item 5c) ----

PUBLISHED = sorted(p for p in (Path(__file__).parent / "fixtures" / "config" / "published").glob("*.json")
                   if not p.name.endswith(".source.json"))


def _sidecar(path: Path) -> dict[str, Any]:
    return json.loads(path.with_name(path.stem + ".source.json").read_text())


def test_every_published_fixture_names_its_source_and_release() -> None:
    assert len(PUBLISHED) >= 10
    for path in PUBLISHED:
        side = _sidecar(path)
        assert side["source"] and side["release"] and side["expect"] in ("accepted", "rejected"), path.name
        assert side["expect"] == "accepted" or side["fields"], path.name


@pytest.mark.parametrize("path", PUBLISHED, ids=lambda p: p.stem)
@pytest.mark.parametrize("how", ["release", "shape"])
def test_published_config_is_judged_as_its_release_judges_it(path: Path, how: str) -> None:
    """Accepted files give no error; MindIE-LLM's own rejecting cases are rejected for the fields its test breaks.
    Content rules only: the model directories and TLS files of the publisher's machine do not exist here."""
    side = _sidecar(path)
    data = json.loads(path.read_text())
    problems = validate_config(data, version=side["release"] if how == "release" else None, check_model_dir=False)
    errors_found = [p for p in problems if p.severity == "error"]
    if side["expect"] == "accepted":
        assert errors_found == [], [str(p) for p in errors_found]
    else:
        assert set(side["fields"]) <= {p.path for p in errors_found}, [str(p) for p in errors_found]
    lines = [str(p) for p in problems]
    assert len(lines) == len(set(lines))  # one line per problem


# ---- the 2.3.0 and 3.0.0 source rules, on the config each release ships ----

FIXTURES = Path(__file__).parent / "fixtures" / "config" / "published"


def _shipped(release: str) -> dict[str, Any]:
    data = json.loads((FIXTURES / f"mindie-llm-{release}-shipped-config.json").read_text())
    data["ServerConfig"]["httpsEnabled"] = False
    return data


def _judged(data: dict[str, Any], version: str, environ: dict[str, str] | None = None) -> list[Any]:
    return validate_config(data, version=version, check_model_dir=False, environ=environ or {})


def _without(data: dict[str, Any], path: str) -> dict[str, Any]:
    out = json.loads(json.dumps(data))
    *parents, last = path.split(".")
    node = out
    for part in parents:
        node = node[part]
    del node[last]
    return out


def test_shipped_configs_are_valid_for_their_release() -> None:
    assert errors(_judged(_shipped("2.3.0"), "2.3.0")) == []
    assert errors(_judged(_shipped("3.0.0"), "3.0.0")) == []


@pytest.mark.parametrize("path", ["ServerConfig.distDPServerEnabled", "BackendConfig.multiNodesInferEnabled",
                                  "BackendConfig.interNodeTLSEnabled"])
@pytest.mark.parametrize("release", ["2.3.0", "3.0.0"])
def test_keys_read_unconditionally_are_compulsory(path: str, release: str) -> None:
    problems = errors(_judged(_without(_shipped(release), path), release))
    assert [str(p) for p in problems] == [f"{path}: missing compulsory field (read unconditionally: the daemon stops "
                                          "with \"type must be boolean, but is null\")"]
    assert "type must be boolean, but is null" in problems[0].native


def test_2_3_0_does_not_require_version_or_truncation() -> None:
    data = _without(_without(_shipped("2.3.0"), "Version"), "BackendConfig.ModelDeployConfig.truncation")
    assert errors(_judged(data, "2.3.0")) == []


@pytest.mark.parametrize(("path", "value", "error_2_3", "native_2_3"), [
    ("BackendConfig.ScheduleConfig.maxBatchSize", 5001, "5001 is out of range [1, 5000]",
     "scheduleParam.maxBatchSize [5001] is out of bound [5000]"),
    ("BackendConfig.ModelDeployConfig.truncation", 1, "expected boolean, got an integer 1",
     "The type of param truncation should be bool, but got number"),
    ("BackendConfig.kvPoolConfig.backend", "memcache", '"memcache" is not one of "", "unifiedcache", "mooncake"',
     ""),
])
def test_rules_that_changed_in_3_0(path: str, value: Any, error_2_3: str, native_2_3: str) -> None:
    """2.3.0: maxBatchSize <= 5000 (schedule_config.cpp:239), truncation bool (model_deploy_config.cpp:36), kvPool
    backends without memcache (param_checker.cpp:391); 3.0.0 allows each."""
    problems = errors(_judged(variant(_shipped("2.3.0"), path, value), "2.3.0"))
    assert [(p.path, p.message) for p in problems] == [(path, error_2_3)]
    assert problems[0].native == native_2_3
    assert errors(_judged(variant(_shipped("3.0.0"), path, value), "3.0.0")) == []


def test_mix_template_is_exempt_from_the_prefill_rule_only_on_3_0() -> None:
    def mix(release: str) -> dict[str, Any]:
        data = variant(_shipped(release), "BackendConfig.ScheduleConfig.templateType", "Mix")
        return variant(data, "BackendConfig.ScheduleConfig.maxPrefillTokens", 1024)
    assert [p.path for p in errors(_judged(mix("2.3.0"), "2.3.0"))] == ["BackendConfig.ScheduleConfig.maxPrefillTokens"]
    assert errors(_judged(mix("3.0.0"), "3.0.0")) == []


@pytest.mark.parametrize(("address", "environ", "expected"), [
    ("localhost", {}, "ServerConfig.ipAddress: localhost format is invalid (neither IPv4 nor IPv6)"),
    ("999.1.1.1", {}, "ServerConfig.ipAddress: 999.1.1.1 is invalid: not an IP literal"),
    ("::1", {}, None),
    ("10.1.2.3", {}, None),
    ("localhost", {"MIES_CONTAINER_IP": "10.0.0.7"}, None),  # the environment overrides the file
    ("127.0.0.1", {"MIES_CONTAINER_IP": "node-7"}, "MIES_CONTAINER_IP: node-7 format is invalid"),
    ("0.0.0.0", {}, "ServerConfig.ipAddress: 0.0.0.0 is invalid: listening on all addresses needs"),
])
def test_ip_address_is_an_inet_pton_literal(address: str, environ: dict[str, str], expected: str | None) -> None:
    problems = [str(p) for p in errors(_judged(variant(_shipped("2.3.0"), "ServerConfig.ipAddress", address), "2.3.0",
                                               environ))]
    if expected is None:
        assert problems == []
    else:
        assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_misspelt_key_is_a_warning_naming_the_nearest_known_one() -> None:
    data = _shipped("2.3.0")
    data["ServerConfig"]["portt"] = data["ServerConfig"].pop("port")
    problems = _judged(data, "2.3.0")
    assert "ServerConfig.port: missing compulsory field" in [str(p) for p in errors(problems)]
    assert [str(p) for p in problems if p.severity == "warning"] == [
        "ServerConfig.portt: unknown key: MindIE 2.3.0 does not read it; did you mean 'port'?"]


def test_tls_keys_per_release() -> None:
    """httpsEnabled: 2.3.0 checks tlsPkPwd only when set (server_config.cpp:488) and needs the KMC files (:427-431);
    3.0.0 reads neither, so a 3.0 file without them is complete and a 2.3 file's ones are unknown keys there."""
    on23 = variant(_without(_shipped("2.3.0"), "ServerConfig.tlsPkPwd"), "ServerConfig.httpsEnabled", True)
    assert errors(_judged(on23, "2.3.0")) == []
    assert [str(p) for p in errors(_judged(_without(on23, "ServerConfig.kmcKsfMaster"), "2.3.0"))] == [
        "ServerConfig.kmcKsfMaster: missing: httpsEnabled true needs the TLS files"]
    on30 = variant(_shipped("3.0.0"), "ServerConfig.httpsEnabled", True)
    assert errors(_judged(on30, "3.0.0")) == []
    warned = [str(p) for p in _judged(_shipped("2.3.0"), "3.0.0") if p.path == "ServerConfig.tlsPkPwd"]
    assert warned == ["ServerConfig.tlsPkPwd: is a key of the 1.0 and 2.x layouts: MindIE 3.0.0 does not read it"]


def test_inter_node_tls_keys_are_read_when_enabled() -> None:
    """backend_config.cpp:199-207 (40fb0630): with interNodeTLSEnabled the TLS keys are read unconditionally."""
    data = variant(_without(_shipped("2.3.0"), "BackendConfig.interNodeTlsCert"), "BackendConfig.interNodeTLSEnabled",
                   True)
    problems = errors(_judged(data, "2.3.0"))
    assert [(p.path, p.native) for p in problems] == [("BackendConfig.interNodeTlsCert", "Failed to init tls cfg")]
    assert errors(_judged(variant(data, "BackendConfig.interNodeTLSEnabled", False), "2.3.0")) == []


def test_3_0_refuses_the_ms_backend_with_the_reason() -> None:
    data = variant(_shipped("3.0.0"), "BackendConfig.ModelDeployConfig.ModelConfig[0].backendType", "ms")
    problems = [str(p) for p in errors(_judged(data, "3.0.0"))]
    assert len(problems) == 1
    for fact in ("2072a951", "model_deploy_config.cpp:456", "__init__.py:33", '"atb"', "--profile atb", "2.3.0"):
        assert fact in problems[0]
    torch = variant(_shipped("2.3.0"), "BackendConfig.ModelDeployConfig.ModelConfig[0].backendType", "torch")
    assert [p.path for p in errors(_judged(torch, "2.3.0"))] == [f"{MC}.backendType"]


# ---- which release judges the file ----

def test_release_comes_from_the_install_then_the_flag_then_the_shape(tmp_path: Path) -> None:
    from mindie_pack.config import validate_report

    service = tmp_path / "mindie" / "3.0.0" / "mindie-service"
    service.mkdir(parents=True)
    (service.parent / "version.info").write_text("Ascend-mindie : MindIE 2.3.0\n")
    path = _write(tmp_path / "config.json", _shipped("3.0.0"))
    by_install = validate_report(path, install_dir=service, version="3.0.0", check_model_dir=False)
    assert by_install.judgement is not None and by_install.judgement.name == "2.3.0"
    assert "version file" in by_install.judgement.reason
    # judged by 2.3.0: the 3.0 file's integer truncation, and the inter-node TLS keys 3.0 dropped, are refused
    assert {p.path for p in errors(by_install.problems)} == {
        "BackendConfig.ModelDeployConfig.truncation", "BackendConfig.interNodeKmcKsfMaster",
        "BackendConfig.interNodeKmcKsfStandby", "BackendConfig.interNodeTlsPkPwd"}
    by_flag = validate_report(path, version="3.0.0", check_model_dir=False)
    assert by_flag.judgement is not None and by_flag.judgement.reason == "--mindie-version 3.0.0"
    assert by_flag.valid
    by_shape = validate_report(path, check_model_dir=False)
    assert by_shape.judgement is not None and by_shape.judgement.name == "3.0.0"
    assert by_shape.judgement.reason.startswith("file shape:")


def test_a_file_mixing_layouts_is_judged_leniently() -> None:
    """The published 1.0.RC3 config plus 2.x timeouts: never rejected for a field of a layout it may not belong to
    (allowAllZeroIpListening, compulsory on 2.3.0, is not known to be so on 1.0)."""
    data = json.loads((FIXTURES / "mindformers-llm-boost-qwen2-1.0.RC3.json").read_text())
    data["ServerConfig"].update(tokenTimeout=600, e2eTimeout=600)
    from mindie_pack.config import judge

    judgement = judge(data)
    assert judgement.lenient and {r.layout for r in judgement.releases} >= {"1.0", "2.x"}
    problems = validate_config(data, check_model_dir=False)
    assert errors(problems) == []
    assert [p.severity for p in problems if p.path == "ServerConfig.allowAllZeroIpListening"] == ["warning"]
    broken = variant(data, "BackendConfig.ScheduleConfig.cacheBlockSize", 512)  # wrong under every layout
    assert [p.path for p in errors(validate_config(broken, check_model_dir=False))] == [
        "BackendConfig.ScheduleConfig.cacheBlockSize"]


def test_a_layout_older_than_1_0_rc3_is_reported_once() -> None:
    data = {"OtherParam": {"ResourceParam": {"cacheBlockSize": 128}, "LogParam": {"logLevel": "Info"},
                           "ServeParam": {"ipAddress": "127.0.0.1", "port": 1025}}}
    assert [str(p) for p in validate_config(data)] == [
        "(root): the OtherParam layout of MindIE 1.0.RC1/1.0.RC2 (before 1.0.RC3) is not supported: mindie-pack "
        "judges 1.0.RC3 and later; start from the conf/config.json of your release"]


def test_daemon_log_lines_use_the_real_wording() -> None:
    from mindie_pack.config import daemon_log_lines

    data = variant(_without(_shipped("2.3.0"), "BackendConfig.ScheduleConfig.maxIterTimes"),
                   "BackendConfig.ScheduleConfig.maxBatchSize", 6000)
    assert daemon_log_lines(_judged(data, "2.3.0")) == [
        "[ParamChecker::CheckJsonParamType] maxIterTimes: missing compulsory field",
        "scheduleParam.maxBatchSize [6000] is out of bound [5000]"]


# ---- input bounds (issue 11) ----

def test_validate_cli_refuses_unreadable_inputs_in_one_line(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    nested = tmp_path / "nested.json"
    nested.write_text('{"a":' * 100 + "1" + "}" * 100)
    for target, expected in ((Path("/dev/zero"), "is not a regular file"), (tmp_path, "is a directory"),
                             (deep, "JSON nested deeper than"), (nested, "JSON nested deeper than 64 levels"),
                             (tmp_path / "missing.json", "file not found")):
        result = cli("config", "validate", target, "--skip-model-dir")
        assert result.exit_code == 1, (target, result.stdout, result.stderr)
        assert "Traceback" not in result.stdout + result.stderr
        lines = result.stdout.splitlines()
        assert len(lines) == 2 and lines[0].startswith(f"{target}: ") and expected in lines[0], lines
    missing_home = cli("config", "validate", deep, "--mindie-home", tmp_path / "nowhere")
    assert missing_home.exit_code == 2 and "--mindie-home" in missing_home.stderr


def test_validate_json_says_which_rules_and_why(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    path = _write(tmp_path / "config.json", _shipped("2.3.0"))
    result = cli("config", "validate", path, "--skip-model-dir", "--json", "--mindie-version", "2.3.0")
    assert result.exit_code == 0, result.stdout
    report = json.loads(result.stdout)
    assert report["rules"]["release"] == "2.3.0" and report["rules"]["reason"] == "--mindie-version 2.3.0"
    assert "40fb0630" in report["rules"]["rules_from"][0]


def test_closed_releases_warn_where_a_later_release_made_a_field_compulsory() -> None:
    """2.1.x is closed source: allowAllZeroIpListening, compulsory in the 2.3.0 source, is only a warning there."""
    data = _without(_shipped("2.3.0"), "ServerConfig.allowAllZeroIpListening")
    on21 = _judged(data, "2.1.RC2")
    assert errors(on21) == []
    assert [str(p) for p in on21 if p.path == "ServerConfig.allowAllZeroIpListening"] == [
        "ServerConfig.allowAllZeroIpListening: missing: required from MindIE 2.3.0 on (not known to be required by "
        "2.1.x; add it to be safe)"]
    assert [p.path for p in errors(_judged(data, "2.3.0"))] == ["ServerConfig.allowAllZeroIpListening"]


def test_tls_files_under_the_install_dir(tmp_path: Path) -> None:
    """httpsEnabled on 2.3.0: every file relative to the install home, mode <= 0640 and owned by the daemon's user
    (param_checker.cpp:330-345); MINDIE_CHECK_INPUTFILES_PERMISSION=0 makes mode and owner warnings."""
    data = variant(_shipped("2.3.0"), "ServerConfig.httpsEnabled", True)
    server = data["ServerConfig"]
    server.update(managementIpAddress=server["ipAddress"], managementPort=server["port"], metricsPort=server["port"])
    files = [server[k] for k in ("tlsCert", "tlsPk", "tlsPkPwd", "kmcKsfMaster", "kmcKsfStandby")]
    files += [server["tlsCaPath"] + name for name in server["tlsCaFile"]]
    for name in files:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x")
        os.chmod(tmp_path / name, 0o600)

    def judged(environ: dict[str, str]) -> list[Any]:
        return [p for p in validate_config(data, version="2.3.0", check_model_dir=False, install_dir=tmp_path,
                                           environ=environ) if p.path.startswith("ServerConfig")]
    assert judged({}) == []
    os.chmod(tmp_path / server["tlsPk"], 0o644)
    assert [(p.severity, p.path) for p in judged({})] == [("error", "ServerConfig.tlsPk")]
    assert [(p.severity, p.path) for p in judged({"MINDIE_CHECK_INPUTFILES_PERMISSION": "0"})] == [
        ("warning", "ServerConfig.tlsPk")]
    (tmp_path / server["kmcKsfMaster"]).unlink()
    assert "ServerConfig.kmcKsfMaster" in [p.path for p in errors(judged({}))]
