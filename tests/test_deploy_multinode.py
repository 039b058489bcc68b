"""`deploy --hosts` over real SSH: three servers on 127.0.0.2-4, each with its own OpenSSH sshd, its own state
folder and its own emulated MindIE (its own stand-in hccn_tool with its own device IPs). Deploy, status, logs,
a killed worker, stop, and a node that fails at start."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from mindie_pack.emulator.install import install_emulator

from deploy_helpers import free_port_block

pytestmark = pytest.mark.slow
SSHD = shutil.which("sshd") or "/usr/sbin/sshd"
ADDRESSES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


@dataclass
class Server:
    name: str
    address: str
    ssh_port: int
    state_dir: Path
    mindie_home: Path
    port: int
    proc: subprocess.Popen[bytes]
    sshd_config: Path

    def stop_ssh(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)

    def start_ssh(self) -> None:
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.sshd_config)], stderr=subprocess.DEVNULL)
        _wait_listening(self)


def _need_sshd() -> None:
    if not os.path.exists(SSHD):
        if os.environ.get("CI"):
            pytest.fail(f"{SSHD} is missing: `make setup-dev` installs Debian's openssh-server for this test")
        pytest.skip("OpenSSH's sshd is not installed (make setup-dev installs it)")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model built for 6 NPUs: three servers with two each."""
    from mindie_pack.builder.assemble import build_model_dir
    from mindie_pack.builder.options import BuildOptions
    from mindie_pack.tiny_model import TinyModelSpec, make_tiny_model

    root = tmp_path_factory.mktemp("mn-model")
    hf = make_tiny_model(root / "hf", TinyModelSpec(family="qwen2", dtype="float32", hidden_size=96, num_heads=6,
                                                    num_kv_heads=6, intermediate_size=192))
    out = root / "tiny-tp6"
    build_model_dir(BuildOptions(model_dir=hf, output_dir=out, tp=6, name="tiny-tp6"))
    return out


@pytest.fixture
def servers(tmp_path: Path) -> Iterator[tuple[list[Server], Path, Path]]:
    """Three sshd servers; returns them, the client's ssh_config and known_hosts."""
    _need_sshd()
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # sshd's privilege-separation folder
    keys = tmp_path / "keys"
    keys.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "client")], check=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / "host")], check=True)
    (keys / "authorized_keys").write_text((keys / "client.pub").read_text())
    host_pub = (keys / "host.pub").read_text().split()
    ssh_config, known_hosts = tmp_path / "ssh_config", tmp_path / "known_hosts"
    started: list[Server] = []
    config_lines: list[str] = []
    known: list[str] = []
    passthrough = {k: os.environ[k] for k in ("PYTHONPATH",) if os.environ.get(k)}
    try:
        for index, address in enumerate(ADDRESSES):
            name = f"node{index + 1}"
            root = tmp_path / name
            # two NPUs per server: the model needs six, so each node must be judged by its own two
            emulator = install_emulator(root / "Ascend", mindie_version="2.3.0", fake_model=True, npu_count=2)
            npu = emulator.state()
            npu["device_ips"] = {k: f"192.168.{index + 1}.{int(k) + 10}" for k in npu["device_ips"]}
            emulator.set_state(npu)
            ssh_port = free_port_block(1)
            env = {"MINDIE_PACK_STATE_DIR": str(root / "state"), "HCCL_CONNECT_TIMEOUT": "30", **passthrough}
            sshd_config = root / "sshd_config"
            sshd_config.write_text("\n".join([
                f"ListenAddress {address}", f"Port {ssh_port}", f"HostKey {keys / 'host'}",
                f"AuthorizedKeysFile {keys / 'authorized_keys'}", "PermitRootLogin prohibit-password",
                "PasswordAuthentication no", "KbdInteractiveAuthentication no", "UsePAM no", "StrictModes no",
                f"PidFile {root / 'sshd.pid'}", "LogLevel ERROR",
                "SetEnv " + " ".join(f"{k}={v}" for k, v in env.items()), ""]))
            proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(sshd_config)], stderr=subprocess.DEVNULL)
            started.append(Server(name, address, ssh_port, root / "state", emulator.mindie_service,
                                  free_port_block(), proc, sshd_config))
            config_lines += [f"Host {name}", f"  HostName {address}", f"  Port {ssh_port}", "  User root",
                             f"  IdentityFile {keys / 'client'}", "  IdentitiesOnly yes", ""]
            known.append(f"[{address}]:{ssh_port} {host_pub[0]} {host_pub[1]}")
        ssh_config.write_text("\n".join(config_lines))
        known_hosts.write_text("\n".join(known) + "\n")
        for server in started:
            _wait_listening(server)
        yield started, ssh_config, known_hosts
    finally:
        for server in started:
            if server.proc.poll() is None:
                server.stop_ssh()
        _kill_leftover_daemons(tmp_path)


def _wait_listening(server: Server) -> None:
    """sshd listens once it has read its config."""
    import socket

    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            socket.create_connection((server.address, server.ssh_port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"sshd on {server.address}:{server.ssh_port} did not listen")


def _daemons_under(folder: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["environ"]):
        try:
            home = (proc.info.get("environ") or {}).get("MINDIE_EMULATOR_HOME", "")
        except (psutil.Error, OSError):
            continue
        if home.startswith(str(folder)):
            found.append(proc)
    return found


def _kill_leftover_daemons(folder: Path) -> None:
    for proc in _daemons_under(folder):
        try:
            proc.kill()
        except psutil.Error:
            pass


def _spec(tmp_path: Path, model: Path, servers: list[Server]) -> Path:
    spec = {"version": 1, "model": {"source": str(model), "output": str(model)},
            "deploy": {"mindie_home": str(servers[0].mindie_home)},
            "hosts": [{"host": s.name, "port": s.port, "mindie_home": str(s.mindie_home)} for s in servers]}
    path = tmp_path / "mindie-pack.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _cli_args(spec: Path, ssh_config: Path, known_hosts: Path) -> list[str | Path]:
    return ["--spec", spec, "--ssh-config", ssh_config, "--known-hosts", known_hosts,
            "--remote-pack", str(Path(sys.executable).parent / "mindie-pack")]


def test_deploy_status_logs_killed_worker_stop(cli: Callable[..., Any], model_dir: Path, tmp_path: Path,
                                               servers: tuple[list[Server], Path, Path],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    nodes, ssh_config, known_hosts = servers
    monkeypatch.setenv("MINDIE_PACK_STATE_DIR", str(tmp_path / "controller"))
    spec = _spec(tmp_path, model_dir, nodes)
    link = free_port_block(1)
    result = cli("deploy", *_cli_args(spec, ssh_config, known_hosts), "--set",
                 f"BackendConfig.multiNodesInferPort={link}", "--timeout", "120", "--json")
    assert result.exit_code == 0, result.stderr
    state = json.loads(result.stdout)
    assert state["mode"] == "cluster"
    assert state["business_url"] == f"http://127.0.0.2:{nodes[0].port}"
    cluster = state["cluster"]
    assert [(h["host"], h["role"], h["address"]) for h in cluster["hosts"]] == [
        ("node1", "master", "127.0.0.2"), ("node2", "worker", "127.0.0.3"), ("node3", "worker", "127.0.0.4")]
    # One rank table over the three servers: device IPs as each node's hccn_tool reported them, ranks 0..N-1.
    table = cluster["rank_table"]
    assert table["server_count"] == "3"
    assert [s["container_ip"] for s in table["server_list"]] == list(ADDRESSES)
    assert [[(d["device_id"], d["device_ip"], d["rank_id"]) for d in s["device"]] for s in table["server_list"]] == [
        [("0", "192.168.1.10", "0"), ("1", "192.168.1.11", "1")],
        [("0", "192.168.2.10", "2"), ("1", "192.168.2.11", "3")],
        [("0", "192.168.3.10", "4"), ("1", "192.168.3.11", "5")]]
    for node in nodes:  # each node copied the same table and recorded its own deployment
        assert json.loads((node.state_dir / "node" / "ranktable.json").read_text()) == table
        assert json.loads((node.state_dir / "node" / "deployment.json").read_text())["role"] in ("master", "worker")

    # The service answers like a single server: smoke finds it through the recorded deployment.
    with httpx.Client(timeout=30, trust_env=False) as client:
        answer = client.post(f"{state['business_url']}/generate", json={"inputs": "hi", "parameters":
                                                                        {"max_new_tokens": 2}})
        assert answer.status_code == 200
    smoke = cli("smoke", "--json")
    assert smoke.exit_code == 0, smoke.stdout + smoke.stderr

    status = cli("status", "--json")
    assert status.exit_code == 0, status.stderr
    report = json.loads(status.stdout)
    assert report["up"] and [n["up"] for n in report["nodes"]] == [True, True, True]

    logs = cli("logs", "--host", "node2", "-n", "50")
    assert logs.exit_code == 0 and "joined master 127.0.0.2" in logs.stdout
    _follow_then_interrupt(tmp_path)
    assert "--host is required" in cli("logs").stderr
    assert "not a node of this deployment" in cli("logs", "--host", "node9").stderr

    # A killed worker: status names it and the master's health fails; exit 1.
    worker = json.loads((nodes[2].state_dir / "node" / "deployment.json").read_text())
    os.killpg(worker["pgid"], signal.SIGKILL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        status = cli("status", "--json")
        report = json.loads(status.stdout)
        if not report["nodes"][2]["up"] and not report["nodes"][0]["up"]:
            break
        time.sleep(0.5)
    assert status.exit_code == 1
    assert [n["up"] for n in report["nodes"]] == [False, True, False]

    # A server that cannot be reached is named as down and does not keep the others from being acted on.
    nodes[1].stop_ssh()
    status = cli("status", "--json")
    report = json.loads(status.stdout)
    assert status.exit_code == 1
    assert "node2: cannot connect over SSH" in report["nodes"][1]["note"]
    partial = cli("stop", "--json")
    assert partial.exit_code == 1
    results = {r["host"]: r for r in json.loads(partial.stdout)["nodes"]}
    assert results["node1"]["stopped"] and results["node3"]["stopped"] and not results["node2"]["stopped"]
    assert "1 node(s) not stopped: node2" in partial.stderr
    assert (tmp_path / "controller" / "deployment.json").exists()  # kept, so that stop can be run again
    nodes[1].start_ssh()
    stopped = cli("stop", "--json")
    assert stopped.exit_code == 0, stopped.stdout + stopped.stderr
    assert json.loads(stopped.stdout)["stopped"] is True
    assert _daemons_under(tmp_path) == []  # no process left on any node
    assert not (tmp_path / "controller" / "deployment.json").exists()


def _follow_then_interrupt(tmp_path: Path) -> None:
    """`logs --host node1 -f` streams the node's log over SSH; Ctrl-C ends it here and on the node."""
    env = {**os.environ, "MINDIE_PACK_STATE_DIR": str(tmp_path / "controller")}
    # Ctrl-C reaches a terminal's foreground job, whose SIGINT is at its default. A test run started in the
    # background (`cmd &` in a script, nohup) ignores SIGINT, and an ignored signal stays ignored across exec: the
    # child would never see our SIGINT. A handled one is reset to the default at exec, so handle it while we start.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        follow = subprocess.Popen([str(Path(sys.executable).parent / "mindie-pack"), "logs", "--host", "node1", "-f",
                                   "-n", "3"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, previous)
    try:
        assert follow.stdout is not None
        first = [follow.stdout.readline() for _ in range(3)]
        assert all(first) and any("Daemon start success!" in line or "[multi-node]" in line or "success" in line
                                  for line in first), first
        follow.send_signal(signal.SIGINT)
        assert follow.wait(timeout=30) == 0
    finally:
        if follow.poll() is None:
            follow.kill()
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:  # only this test's nodes: their state folders are under tmp_path
        remote = [p for p in psutil.process_iter(["cmdline", "environ"])
                  if "--follow" in (p.info.get("cmdline") or [])
                  and (p.info.get("environ") or {}).get("MINDIE_PACK_STATE_DIR", "").startswith(str(tmp_path))]
        if not remote:
            break
        time.sleep(0.2)
    assert remote == [], "the node's `logs --follow` outlived the session"


def test_a_node_that_fails_at_start_is_named_and_the_others_are_stopped(
        cli: Callable[..., Any], model_dir: Path, tmp_path: Path, servers: tuple[list[Server], Path, Path],
        monkeypatch: pytest.MonkeyPatch) -> None:
    nodes, ssh_config, known_hosts = servers
    monkeypatch.setenv("MINDIE_PACK_STATE_DIR", str(tmp_path / "controller"))
    # node3's MindIE is broken after its doctor passed: its daemon dies at start (config file unreadable).
    launcher = nodes[2].mindie_home / "bin" / "mindieservice_daemon"
    launcher.chmod(0o750)
    launcher.write_text("#!/bin/bash\necho 'Failed to init endpoint! injected by the test'\nexit 1\n")
    spec = _spec(tmp_path, model_dir, nodes)
    result = cli("deploy", *_cli_args(spec, ssh_config, known_hosts), "--set",
                 f"BackendConfig.multiNodesInferPort={free_port_block(1)}", "--timeout", "60")
    assert result.exit_code == 2
    assert "worker node3 (127.0.0.4): deploy failed" in result.stderr
    assert "Failed to init endpoint! injected by the test" in result.stderr
    assert "stopped the nodes started so far: node1, node2, node3\n" in result.stderr + "\n"  # none failed to stop
    assert "deploy failed: deploy failed" not in result.stderr
    assert "Traceback" not in result.stderr
    assert _daemons_under(tmp_path) == []
    assert not (tmp_path / "controller" / "deployment.json").exists()


def test_bad_cluster_inputs(cli: Callable[..., Any], model_dir: Path, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MINDIE_PACK_STATE_DIR", str(tmp_path / "controller"))
    base = ["deploy", "--model-dir", model_dir, "--mindie-home", tmp_path]
    one = cli(*base, "--hosts", "solo")
    assert one.exit_code == 2 and "at least two servers" in one.stderr
    twice = cli(*base, "--hosts", "a,a")
    assert twice.exit_code == 2 and "a is listed twice" in twice.stderr
    uneven = cli(*base, "--hosts", "a,b,c,d")
    assert uneven.exit_code == 2 and "built for 6 NPUs, which 4 servers cannot share evenly" in uneven.stderr
    docker = cli(*base, "--hosts", "a,b", "--docker", "mindie:2.3.0")
    assert docker.exit_code == 2 and "--docker does not go with --hosts" in docker.stderr
    dry = cli(*base, "--hosts", "a,b,c", "--dry-run", "--json")
    assert dry.exit_code == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert plan["devices_per_node"] == [0, 1] and plan["world_size"] == 6
    assert sum("deploy --detach" in line for line in plan["steps"]) == 3
    assert not (tmp_path / "controller" / "deployment.json").exists()  # nothing was started or recorded
    unknown = cli(*base, "--hosts", "127.0.0.9,127.0.0.10", "--known-hosts", tmp_path / "none",
                  "--ssh-config", tmp_path / "none-config")
    assert unknown.exit_code == 2 and unknown.stderr.startswith("error: 127.0.0.9")
    assert "Traceback" not in unknown.stderr
