"""The Docker launcher: the daemon in a MindIE container (spec in docker_spec.py), through the docker SDK.

The container's output is copied into the deployment's daemon.log while `deploy` waits, so the one readiness
loop reads it like the host daemon's; `logs` asks the engine for the container's log.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

from mindie_pack.deploy.logs import open_log
from mindie_pack.deploy.preflight import DeployPlan
from mindie_pack.deploy.process import TOKEN_ENV
from mindie_pack.deploy.state import DeploymentState
from mindie_pack.errors import PackError

ENGINE_TIMEOUT_S = 30
LOG_DRAIN_S = 10.0  # how long an exited container's last output may take to reach daemon.log


def docker_client() -> Any:
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a dependency
        raise PackError("--docker needs the docker Python package") from exc
    try:
        return docker.from_env(timeout=ENGINE_TIMEOUT_S)
    except docker.errors.DockerException as exc:
        raise PackError(f"docker: no engine reachable ({exc})") from exc


def _docker_errors() -> tuple[type[BaseException], ...]:
    try:
        import docker

        return (docker.errors.DockerException,)
    except ImportError:  # pragma: no cover
        return ()


class DockerLauncher:
    mode = "docker"

    def __init__(self, client_factory: Callable[[], Any] = docker_client) -> None:
        self._client_factory = client_factory
        self.container: Any = None
        self._pump: threading.Thread | None = None

    def start(self, plan: DeployPlan, token: str) -> DeploymentState:
        from mindie_pack.deploy.launcher import base_state

        assert plan.container is not None
        client = self._client_factory()
        kwargs = plan.container.sdk_kwargs()
        kwargs["environment"] = {**kwargs["environment"], TOKEN_ENV: token}  # type: ignore[dict-item]
        try:
            self.container = client.containers.run(**kwargs)
        except _docker_errors() as exc:
            raise PackError(f"docker: cannot start {plan.container.image} as {plan.container.name}: {exc}") from exc
        fd = open_log(plan.log_path)
        self._pump = threading.Thread(target=self._copy_log, args=(fd,), daemon=True, name="container-log")
        self._pump.start()
        state = base_state(plan, self.mode)
        state.container_id = self.container.id
        state.token = token
        return state

    def _copy_log(self, fd: int) -> None:
        try:
            for chunk in self.container.logs(stream=True, follow=True):
                os.write(fd, chunk)
        except Exception:  # noqa: BLE001 - the engine went away: the readiness loop reports the exit
            pass
        finally:
            os.close(fd)

    def exit_code(self) -> int | None:
        try:
            self.container.reload()
        except _docker_errors() as exc:
            raise PackError(f"docker: lost the container {self.container.id[:12]} ({exc})") from exc
        if self.container.status in ("exited", "dead"):
            self._drain_log()
            return int(self.container.attrs.get("State", {}).get("ExitCode", -1))
        return None

    def _drain_log(self) -> None:
        """The container's last lines (why it exited) reach daemon.log before its exit is reported: the copy runs
        in its own thread, and the engine ends the log stream once the container has stopped."""
        if self._pump is not None:
            self._pump.join(timeout=LOG_DRAIN_S)

    def settle(self, state: DeploymentState) -> DeploymentState:
        return state

    def abort(self, state: DeploymentState, grace_s: float) -> None:
        if self.container is None:
            return
        try:
            self.container.stop(timeout=int(grace_s))
            self.container.remove(force=True)  # its name would block the next deploy; its log is in daemon.log
        except _docker_errors():
            pass
        if self._pump is not None:
            self._pump.join(timeout=5)


def container_running(container_id: str | None, client_factory: Callable[[], Any] = docker_client) -> bool | None:
    """True/False as the engine says; None when the engine cannot be asked."""
    if not container_id:
        return False
    try:
        client = client_factory()
    except PackError:
        return None
    try:
        return bool(client.containers.get(container_id).status == "running")
    except _docker_errors() as exc:
        import docker

        if isinstance(exc, docker.errors.NotFound):
            return False
        return None


def stop_container(container_id: str, timeout_s: float, client_factory: Callable[[], Any] = docker_client) -> None:
    client = client_factory()
    try:
        client.containers.get(container_id).stop(timeout=int(timeout_s))
    except _docker_errors() as exc:
        import docker

        if isinstance(exc, docker.errors.NotFound):
            return
        raise PackError(f"docker: cannot stop container {container_id[:12]}: {exc}") from exc


def container_log(container_id: str, lines: int, follow: bool,
                  client_factory: Callable[[], Any] = docker_client) -> Iterator[str]:
    """The container's log through the engine: its last `lines` lines, then (with follow) new ones."""
    client = client_factory()
    try:
        container = client.containers.get(container_id)
        if not follow:
            data = container.logs(tail=lines)
            yield from data.decode(errors="replace").splitlines()
            return
        partial = b""
        for chunk in container.logs(stream=True, follow=True, tail=lines):
            *complete, partial = (partial + chunk).split(b"\n")
            for line in complete:
                yield line.decode(errors="replace")
    except _docker_errors() as exc:
        raise PackError(f"docker: cannot read the log of container {container_id[:12]}: {exc}") from exc
