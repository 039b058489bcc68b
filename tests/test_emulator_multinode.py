"""The emulator's multi-node mode: three emulated servers on 127.0.0.2-4, one rank table, real daemons."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from mindie_pack.emulator.install import install_emulator

from conftest import REPO_ROOT
from deploy_helpers import build_tiny, free_port_block
from emulator_helpers import write_config_for

pytestmark = pytest.mark.slow

NODES = ("127.0.0.2", "127.0.0.3", "127.0.0.4")


MINDIE_TABLE = REPO_ROOT / "tests" / "fixtures" / "ranktable" / "mindie-llm-2.3.0-ut-ranktable.json"


def rank_table(ips: tuple[str, ...] = NODES, per_server: int = 2) -> dict[str, Any]:
    """MindIE-LLM's own unit-test rank table (its layout: container_ip, no host_nic_ip) stretched to `ips`,
    `per_server` devices each: only addresses and counts change."""
    source = json.loads(MINDIE_TABLE.read_text())
    template = source["server_list"][0]
    servers, rank = [], 0
    for s, ip in enumerate(ips):
        devices = []
        for d in range(per_server):
            device = dict(template["device"][d])
            devices.append({**device, "device_ip": f"10.20.{s}.{d + 2}", "rank_id": str(rank)})
            rank += 1
        servers.append({**template, "device": devices, "server_id": ip, "container_ip": ip})
    return {**source, "server_count": str(len(ips)), "server_list": servers}


@dataclass
class Daemon:
    proc: subprocess.Popen[str]
    lines: list[str] = field(default_factory=list)

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = next((line for line in list(self.lines) if text in line), None)
            if found:
                return found
            if self.proc.poll() is not None and not any(text in line for line in self.lines):
                time.sleep(0.2)  # the reader may still be draining the pipe
                found = next((line for line in list(self.lines) if text in line), None)
                if found:
                    return found
                raise AssertionError(f"daemon exited ({self.proc.returncode}) without {text!r}:\n"
                                     + "".join(self.lines))
            time.sleep(0.05)
        raise AssertionError(f"no {text!r} in {timeout} s:\n" + "".join(self.lines))


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("multinode")
    _, model_dir = build_tiny(root, tp=2)
    service = install_emulator(root / "Ascend", mindie_version="2.3.0", fake_model=True).mindie_service
    return model_dir, service


@contextmanager
def cluster(setup: tuple[Path, Path], tmp_path: Path, ips: tuple[str, ...], *, table: dict[str, Any] | None = None,
            connect_timeout: float = 60, env_edit: dict[str, dict[str, str | None]] | None = None
            ) -> Iterator[dict[str, Any]]:
    model_dir, service = setup
    table_path = tmp_path / "ranktable.json"
    table_path.write_text(json.dumps(table or rank_table()))
    link_port = free_port_block(1)
    daemons: dict[str, Daemon] = {}
    ports: dict[str, int] = {}
    try:
        for ip in ips:
            folder = tmp_path / ip
            folder.mkdir()
            port = free_port_block()
            ports[ip] = port
            write_config_for(model_dir, folder / "config.json", port, f"ServerConfig.ipAddress={ip}",
                             f"ServerConfig.managementIpAddress={ip}", "BackendConfig.multiNodesInferEnabled=true",
                             f"BackendConfig.multiNodesInferPort={link_port}", version="2.3.0")
            env = {**os.environ, "MIES_CONFIG_JSON_PATH": str(folder / "config.json"),
                   "RANK_TABLE_FILE": str(table_path),
                   "MIES_CONTAINER_IP": ip, "HCCL_CONNECT_TIMEOUT": str(connect_timeout)}
            for key, value in ((env_edit or {}).get(ip) or {}).items():
                if value is None:
                    env.pop(key, None)
                else:
                    env[key] = value
            proc = subprocess.Popen([str(service / "bin" / "mindieservice_daemon")], env=env, cwd=folder,
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                    start_new_session=True)
            daemon = Daemon(proc)
            assert proc.stdout is not None
            threading.Thread(target=lambda d=daemon: d.lines.extend(iter(d.proc.stdout.readline, "")),  # type: ignore[union-attr]
                             daemon=True).start()
            daemons[ip] = daemon
        yield {"daemons": daemons, "ports": ports}
    finally:
        for daemon in daemons.values():
            if daemon.proc.poll() is None:
                os.killpg(daemon.proc.pid, signal.SIGKILL)
            daemon.proc.wait(timeout=30)


def test_master_serves_after_every_worker_joined_and_notices_a_lost_worker(setup: tuple[Path, Path],
                                                                           tmp_path: Path) -> None:
    with cluster(setup, tmp_path, NODES) as running:
        daemons, ports = running["daemons"], running["ports"]
        for ip in NODES:
            daemons[ip].wait_for("Daemon start success!")
        master = f"http://{NODES[0]}:{ports[NODES[0]]}"
        joined = "".join(daemons[NODES[0]].lines)
        assert "server 127.0.0.3 (rank 2,3) connected" in joined and "server 127.0.0.4 (rank 4,5) connected" in joined
        assert "connected (2/2)" in joined
        with httpx.Client(timeout=30, trust_env=False) as client:
            answer = client.post(f"{master}/generate", json={"inputs": "hi", "parameters": {"max_new_tokens": 3}})
            assert answer.status_code == 200 and isinstance(answer.json()["generated_text"], str)
            health0 = client.get(f"http://{NODES[0]}:{ports[NODES[0]] + 1}/health")
            assert health0.status_code == 200, health0.text
            # Only the master serves inference: a worker's business port is closed, its management plane answers.
            with pytest.raises(httpx.ConnectError):
                client.get(f"http://{NODES[1]}:{ports[NODES[1]]}/v1/models")
            assert client.get(f"http://{NODES[1]}:{ports[NODES[1]] + 1}/health").status_code == 200
            # A killed worker leaves the master unhealthy, naming the node.
            os.killpg(daemons[NODES[2]].proc.pid, signal.SIGKILL)
            daemons[NODES[0]].wait_for("server 127.0.0.4 (rank 4,5) lost its connection")
            health = client.get(f"http://{NODES[0]}:{ports[NODES[0]] + 1}/health")
            assert health.status_code == 500
            assert json.loads(health.json()["error"]) == {"message": "Abnormal node detected",
                                                          "no_contact_node": ["node(127.0.0.4) is abnormal."]}
        # Stopping the master ends the remaining worker.
        os.killpg(daemons[NODES[0]].proc.pid, signal.SIGTERM)
        assert daemons[NODES[0]].proc.wait(timeout=30) == 0
        daemons[NODES[1]].wait_for("the master is gone; this worker exits")
        assert daemons[NODES[1]].proc.wait(timeout=30) == 1


def test_master_times_out_naming_the_rank_that_never_came(setup: tuple[Path, Path], tmp_path: Path) -> None:
    with cluster(setup, tmp_path, NODES[:2], connect_timeout=3) as running:
        master = running["daemons"][NODES[0]]
        line = master.wait_for("wait socket establish timeout")
        assert "rank[4,5] timeout[3]" in line and "[Wait][LinkEstablish]" in line
        assert "127.0.0.4 (rank 4,5) never connected" in master.wait_for("EI0006")
        assert master.proc.wait(timeout=30) != 0
        assert not any("Daemon start success!" in x for x in master.lines)


def test_a_node_without_the_rank_table_or_outside_it_refuses_to_start(setup: tuple[Path, Path],
                                                                      tmp_path: Path) -> None:
    with cluster(setup, tmp_path, NODES[1:2], env_edit={NODES[1]: {"RANK_TABLE_FILE": None}}) as running:
        daemon = running["daemons"][NODES[1]]
        daemon.wait_for("RANK_TABLE_FILE is not set")
        assert daemon.proc.wait(timeout=30) != 0
    (tmp_path / "b").mkdir()
    with cluster(setup, tmp_path / "b", ("127.0.0.5",)) as running:
        daemon = running["daemons"]["127.0.0.5"]
        assert "MIES_CONTAINER_IP 127.0.0.5" in daemon.wait_for("matches no container_ip or server_id")
        assert daemon.proc.wait(timeout=30) != 0


def test_a_rank_table_mindie_would_refuse_is_refused(setup: tuple[Path, Path], tmp_path: Path) -> None:
    table = rank_table()
    del table["server_list"][1]["container_ip"]
    with cluster(setup, tmp_path, NODES[:1], table=table) as running:
        daemon = running["daemons"][NODES[0]]
        assert "server_list[1].container_ip: missing or empty" in daemon.wait_for("RANK_TABLE_FILE")
        assert daemon.proc.wait(timeout=30) != 0


def test_workers_are_ready_only_when_every_rank_is_in(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """As HCCL: the group forms when every rank has joined, so a worker's start-up does not succeed while
    another server is missing."""
    with cluster(setup, tmp_path, NODES[:2], connect_timeout=4) as running:
        worker = running["daemons"][NODES[1]]
        worker.wait_for("connecting to master")
        assert worker.proc.wait(timeout=30) != 0
        assert not any("Daemon start success!" in line for line in worker.lines)
