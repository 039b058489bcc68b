"""`deploy --docker` through the Docker launcher: the same readiness loop, log file, status and stop as the host
path. No Docker engine exists here, so a stand-in engine reproduces the docker SDK's observable contract
(containers.run/get, status/reload/attrs, logs(stream, follow), stop, remove) and runs the emulated daemon as the
container's process, with the environment and working folder the container spec gives it."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mindie_pack.deploy.container import DockerLauncher, container_log, container_running, stop_container
from mindie_pack.deploy.lifecycle import DeployOptions, deploy
from mindie_pack.deploy.state import load_state
from mindie_pack.emulator.install import install_emulator
from mindie_pack.errors import PackError

from deploy_helpers import build_tiny, free_port_block, port_is_free

pytestmark = pytest.mark.slow


class StandinContainer:
    def __init__(self, daemon: Path, kwargs: dict[str, Any]) -> None:
        self.kwargs = kwargs
        self.id = os.urandom(32).hex()
        self.name = kwargs["name"]
        self.read_fd, write_fd = os.pipe()
        env = {**os.environ, **kwargs["environment"]}  # the image's environment plus the spec's
        self.proc = subprocess.Popen([str(daemon)], cwd=kwargs["working_dir"], env=env, stdout=write_fd,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        os.close(write_fd)
        self.output = bytearray()
        self.done = threading.Event()
        threading.Thread(target=self._collect, daemon=True).start()
        self.status = "running"
        self.attrs: dict[str, Any] = {"State": {}}

    def _collect(self) -> None:
        while chunk := os.read(self.read_fd, 4096):
            self.output += chunk
        self.done.set()

    def reload(self) -> None:
        code = self.proc.poll()
        if code is not None:
            self.status, self.attrs = "exited", {"State": {"ExitCode": code}}

    def logs(self, stream: bool = False, follow: bool = False, tail: int | str = "all") -> Any:
        if not stream:
            lines = bytes(self.output).splitlines(keepends=True)
            return b"".join(lines if tail == "all" else lines[-int(tail):])
        return self._stream(follow)

    def _stream(self, follow: bool) -> Iterator[bytes]:
        sent = 0
        while True:
            finished = self.done.is_set()  # before the output: _collect adds its last chunk before it sets done
            if len(self.output) > sent:
                chunk = bytes(self.output[sent:])
                sent += len(chunk)
                yield chunk
            elif not follow or finished:
                return
            else:
                time.sleep(0.05)

    def remove(self, force: bool = False) -> None:
        self.stop(timeout=1) if force else None
        self.status = "removed"

    def stop(self, timeout: int = 10) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.reload()


class StandinEngine:
    """docker.from_env() of an engine whose only image runs the emulated mindieservice_daemon."""

    def __init__(self, daemon: Path) -> None:
        self.daemon = daemon
        self.by_id: dict[str, StandinContainer] = {}
        self.containers = self

    def run(self, **kwargs: Any) -> StandinContainer:
        assert kwargs["detach"] is True and kwargs["network_mode"] == "host"
        container = StandinContainer(self.daemon, kwargs)
        self.by_id[container.id] = container
        return container

    def get(self, container_id: str) -> StandinContainer:
        if container_id not in self.by_id:
            import docker

            raise docker.errors.NotFound(f"No such container: {container_id}")  # the SDK's own error
        return self.by_id[container_id]

    def remove_all(self) -> None:
        for container in self.by_id.values():
            container.stop(timeout=5)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("docker"))[1]


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_emulator(tmp_path_factory.mktemp("emu") / "Ascend").mindie_service


@pytest.fixture
def engine(emulator: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandinEngine]:
    monkeypatch.setenv("MINDIE_PACK_STATE_DIR", str(tmp_path / "state"))
    standin = StandinEngine(emulator / "bin" / "mindieservice_daemon")
    yield standin
    standin.remove_all()


def _options(model_dir: Path, emulator: Path, port: int, **extra: Any) -> DeployOptions:
    return DeployOptions(model_dir=model_dir, mindie_home=emulator, port=port, docker_image="mindie:standin",
                         log_stream_after_s=0, **extra)


def test_container_deploy_waits_like_the_host_path(built: Path, emulator: Path, engine: StandinEngine) -> None:
    port = free_port_block()
    state = deploy(_options(built, emulator, port), launcher=DockerLauncher(lambda: engine))
    assert state.mode == "docker" and state.container_id in engine.by_id
    assert load_state() == state
    # ready means what it means on the host: success line, /health, /v1/models, a one-token request
    log = Path(state.log_path).read_text()
    assert "Daemon start success!" in log
    assert oct(Path(state.log_path).stat().st_mode & 0o777) == "0o640"
    assert container_running(state.container_id, lambda: engine) is True
    lines = list(container_log(state.container_id, 5, follow=False, client_factory=lambda: engine))
    assert lines and lines == log.splitlines()[-len(lines):]
    stop_container(state.container_id, 5, lambda: engine)
    assert container_running(state.container_id, lambda: engine) is False
    assert all(port_is_free(port + i) for i in range(3))


def test_container_that_exits_is_reported_like_the_host_daemon(built: Path, emulator: Path, engine: StandinEngine,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port_block()
    with pytest.raises(PackError) as caught:
        deploy(_options(built, emulator, port, sets=["ServerConfig.httpsEnabled=true"]),
               launcher=DockerLauncher(lambda: engine))
    message = str(caught.value)
    assert message.startswith("deploy failed: the daemon")
    assert "likely cause: the daemon refused its config" in message
    assert load_state(required=False) is None
    (container,) = engine.by_id.values()
    assert container.proc.returncode is not None
    assert container.status == "removed"  # its name must not block the next deploy; its log is in daemon.log
    assert "Failed to init endpoint" in Path(container.kwargs["working_dir"], "daemon.log").read_text()


def test_container_that_is_gone_is_not_running(engine: StandinEngine) -> None:
    assert container_running("0" * 64, lambda: engine) is False
