"""deploy/status/logs/stop against the emulator, end to end, and every failure path."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mindie_pack.deploy.process import process_alive
from mindie_pack.deploy.state import load_state
from mindie_pack.emulator.install import install_emulator

from conftest import CliResult
from deploy_helpers import build_tiny, free_port_block, kill_recorded_daemon, port_is_free

pytestmark = pytest.mark.slow
Cli = Callable[..., CliResult]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_tiny(tmp_path_factory.mktemp("deploy"))


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_emulator(tmp_path_factory.mktemp("emu") / "Ascend").mindie_service


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("MINDIE_PACK_STATE_DIR", str(tmp_path / "state"))
    yield tmp_path / "state"
    kill_recorded_daemon()


def _deploy(cli: Cli, model_dir: Path, emulator: Path, port: int, *extra: str) -> CliResult:
    return cli("deploy", "--model-dir", model_dir, "--mindie-home", emulator, "--port", str(port), "--json", *extra)


def test_build_deploy_generate_stop(built: tuple[Path, Path], emulator: Path, cli: Cli) -> None:
    hf_dir, model_dir = built
    port = free_port_block()
    result = _deploy(cli, model_dir, emulator, port)
    assert result.exit_code == 0, result.stderr[-3000:]
    state = json.loads(result.stdout)
    assert state["business_url"] == f"http://127.0.0.1:{port}"
    assert state["management_url"] == f"http://127.0.0.2:{port + 1}"
    config = json.loads(Path(state["config_path"]).read_text())
    assert oct(Path(state["config_path"]).stat().st_mode & 0o777) == "0o640"
    assert config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["worldSize"] == 2

    status = cli("status", "--json")
    assert status.exit_code == 0
    report = json.loads(status.stdout)
    assert report["up"] is True and report["models"] == ["tiny-qwen2"]

    prompt = "Tensor parallelism splits each weight"
    response = httpx.post(f"{state['business_url']}/generate", timeout=120, json={
        "inputs": prompt, "parameters": {"do_sample": False, "max_new_tokens": 8, "details": True}})
    assert response.status_code == 200, response.text
    body = response.json()

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model.generation_config.eos_token_id = None
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=0)
    expected_ids = out[0, ids.shape[1]:].tolist()
    assert [t["id"] for t in body["details"]["tokens"]] == expected_ids
    assert body["generated_text"] == tokenizer.decode(expected_ids, skip_special_tokens=True)
    assert body["details"]["prompt_tokens"] == ids.shape[1]

    logs = cli("logs", "-n", "5")
    assert "Daemon start success!" in logs.stdout

    stopped = cli("stop", "--json")
    assert stopped.exit_code == 0
    assert json.loads(stopped.stdout)["graceful_stop_service"] is True
    assert all(port_is_free(port + i) for i in range(3))
    assert not process_alive(state["pid"])  # (a zombie until this test process reaps it)
    assert cli("status").exit_code == 2  # nothing recorded any more


def test_second_deploy_is_refused_unless_replace(built: tuple[Path, Path], emulator: Path, cli: Cli) -> None:
    _, model_dir = built
    first = _deploy(cli, model_dir, emulator, free_port_block())
    assert first.exit_code == 0, first.stderr[-2000:]
    second = _deploy(cli, model_dir, emulator, free_port_block())
    assert second.exit_code == 2
    assert "a deployment is running" in second.stderr and "--replace" in second.stderr
    replaced = _deploy(cli, model_dir, emulator, free_port_block(), "--replace")
    assert replaced.exit_code == 0, replaced.stderr[-2000:]
    old_pid = json.loads(first.stdout)["pid"]
    time.sleep(0.2)
    assert not process_alive(old_pid)
    assert cli("stop").exit_code == 0


def test_occupied_port_is_caught_in_preflight(built: tuple[Path, Path], emulator: Path, cli: Cli) -> None:
    port = free_port_block()
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", port + 1))
        sock.listen()
        result = _deploy(cli, model_dir=built[1], emulator=emulator, port=port)
    assert result.exit_code == 2
    assert f"preflight: ports: in use: {port + 1}" in result.stderr
    assert load_state(required=False) is None


def test_daemon_that_refuses_its_config_exits_and_is_explained(built: tuple[Path, Path], emulator: Path,
                                                               cli: Cli) -> None:
    # httpsEnabled without certificates: only the daemon (which knows its install dir) can see the missing files.
    port = free_port_block()
    result = _deploy(cli, built[1], emulator, port, "--set", "ServerConfig.httpsEnabled=true")
    assert result.exit_code == 2
    assert "deploy failed: the daemon" in result.stderr
    assert "ServerConfig.tlsCert" in result.stderr
    assert "likely cause: the daemon refused its config" in result.stderr
    assert load_state(required=False) is None
    assert all(port_is_free(port + i) for i in range(3))


def test_daemon_that_never_becomes_ready_times_out(built: tuple[Path, Path], emulator: Path, cli: Cli,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDIE_EMULATOR_FAULT", "never-ready")
    started = time.monotonic()
    result = _deploy(cli, built[1], emulator, free_port_block(), "--timeout", "6")
    assert result.exit_code == 2
    assert "the service was not ready after 6 s" in result.stderr
    assert time.monotonic() - started < 60
    assert load_state(required=False) is None


def test_daemon_killed_after_start_shows_down(built: tuple[Path, Path], emulator: Path, cli: Cli) -> None:
    result = _deploy(cli, built[1], emulator, free_port_block())
    assert result.exit_code == 0, result.stderr[-2000:]
    state = json.loads(result.stdout)
    os.killpg(state["pgid"], signal.SIGKILL)
    time.sleep(0.5)
    status = cli("status", "--json")
    assert status.exit_code == 1
    report = json.loads(status.stdout)
    assert report["up"] is False and report["process_alive"] is False
    assert cli("stop").exit_code == 0


def test_model_directory_that_does_not_match_its_manifest(built: tuple[Path, Path], emulator: Path, cli: Cli,
                                                           tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(built[1], copy)
    (copy / "generation_config.json").write_text("{}")
    result = _deploy(cli, copy, emulator, free_port_block())
    assert result.exit_code == 2
    assert "does not match its manifest: generation_config.json: size" in result.stderr


def test_dry_run_prints_the_commands_and_starts_nothing(built: tuple[Path, Path], emulator: Path, cli: Cli) -> None:
    port = free_port_block()
    result = cli("deploy", "--model-dir", built[1], "--mindie-home", emulator, "--port", str(port), "--dry-run",
                 "--docker", "mindie:1.0.RC3-800I-A2-py311-openeuler24.03-lts", "--devices", "4,5", "--json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert "mindieservice_daemon" in info["host_command"] and "MINDIE_LLM_FRAMEWORK_BACKEND=MS" in info["host_command"]
    run = info["docker_run"]
    for piece in ("--net=host", "--shm-size=1g", "--device=/dev/davinci4:/dev/davinci4:rwm",
                  "--device=/dev/davinci5:/dev/davinci5:rwm", "--device=/dev/davinci_manager:/dev/davinci_manager:rwm",
                  f"-v {built[1]}:{built[1]}:ro", "-v /usr/local/Ascend/driver:/usr/local/Ascend/driver:ro",
                  "mindie:1.0.RC3-800I-A2-py311-openeuler24.03-lts"):
        assert piece in run, piece
    assert load_state(required=False) is None
    assert port_is_free(port)


def test_two_concurrent_deploys_one_clean_refusal(built: tuple[Path, Path], emulator: Path, cli: Cli,
                                                  state_dir: Path) -> None:
    import subprocess
    import sys

    ports = [free_port_block(), free_port_block()]
    procs = [subprocess.Popen([sys.executable, "-m", "mindie_pack", "deploy", "--model-dir", str(built[1]),
                               "--mindie-home", str(emulator), "--port", str(port), "--json"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for port in ports]
    outcomes = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 2], outcomes
    loser = next(err for code, _, err in outcomes if code == 2)
    assert "Traceback" not in loser
    assert len(loser.strip().splitlines()) == 1, loser
    assert loser.startswith("error: ") and ("another mindie-pack deploy or stop is running" in loser
                                             or "a deployment is running" in loser)
    state = load_state()
    assert state is not None
    # state folders 0750, the daemon's log 0640
    assert oct(state_dir.stat().st_mode & 0o777) == "0o750"
    assert oct(Path(state.deployment_dir).stat().st_mode & 0o777) == "0o750"
    assert oct(Path(state.deployment_dir).parent.stat().st_mode & 0o777) == "0o750"
    assert oct(Path(state.log_path).stat().st_mode & 0o777) == "0o640"
    assert cli("stop").exit_code == 0


def test_readiness_failure_names_the_step(built: tuple[Path, Path], cli: Cli, monkeypatch: pytest.MonkeyPatch,
                                          tmp_path: Path) -> None:
    # the fake-model emulator starts in about a second; 20 s leave room for a busy machine
    fake = install_emulator(tmp_path / "emu-fake", fake_model=True).mindie_service
    monkeypatch.setenv("MINDIE_EMULATOR_FAULT", "error-status")  # /generate answers 500
    result = _deploy(cli, built[1], fake, free_port_block(), "--timeout", "20")
    assert result.exit_code == 2
    first = result.stderr.splitlines()[0]
    assert "the service was not ready after 20 s (last step: the one-token request returned HTTP 500" in first, first
    assert "\n  last log lines:\n" in result.stderr  # the diagnostic keeps its lines
    assert load_state(required=False) is None


@pytest.mark.parametrize("devices, words", [
    ("0,0", "--devices '0,0': NPU 0 is listed more than once"),
    ("3", "--devices 3: 1 NPU(s) for worldSize 2"),
    ("0,9", "--devices 0,9: this host has no NPU 9 (npu-smi lists 0,1,2,3,4,5,6,7)"),
    ("a,b", "--devices 'a,b': 'a' is not an NPU id"),
])
def test_bad_devices_are_refused_before_anything_starts(built: tuple[Path, Path], emulator: Path, cli: Cli,
                                                        devices: str, words: str) -> None:
    port = free_port_block()
    result = _deploy(cli, built[1], emulator, port, "--devices", devices)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: {words}"), result.stderr
    assert load_state(required=False) is None and port_is_free(port)


def test_missing_mindie_home_is_refused(built: tuple[Path, Path], cli: Cli, tmp_path: Path) -> None:
    result = _deploy(cli, built[1], tmp_path / "nowhere", free_port_block())
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --mindie-home {tmp_path / 'nowhere'}: no such directory"


def test_daemon_that_cannot_be_executed_is_one_line(built: tuple[Path, Path], cli: Cli, tmp_path: Path) -> None:
    home = install_emulator(tmp_path / "Ascend").mindie_service
    daemon = home / "bin" / "mindieservice_daemon"
    os.chmod(daemon, 0o440)  # not executable, even for root
    result = _deploy(cli, built[1], home, free_port_block())
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {daemon}: cannot start it: permission denied"
    assert load_state(required=False) is None
