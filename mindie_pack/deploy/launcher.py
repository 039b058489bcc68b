"""Launchers: how the daemon is started and stopped. `deploy` knows only this interface; the host launcher and
the Docker launcher (deploy/container.py) implement it, and both are waited for by the same readiness loop."""

from __future__ import annotations

import os
import subprocess
import time
from typing import Protocol

from mindie_pack.deploy.logs import open_log
from mindie_pack.deploy.preflight import DeployPlan
from mindie_pack.deploy.process import TOKEN_ENV, find_daemon, identify, terminate
from mindie_pack.deploy.state import DeploymentState
from mindie_pack.errors import PackError


class Launcher(Protocol):
    mode: str

    def start(self, plan: DeployPlan, token: str) -> DeploymentState:
        """Start the daemon with its output in plan.log_path; return what the state file records."""
        ...

    def exit_code(self) -> int | None:
        """The daemon's exit code once it has exited, None while it runs."""
        ...

    def settle(self, state: DeploymentState) -> DeploymentState:
        """Called once the service is ready: complete the recorded identity."""
        ...

    def abort(self, state: DeploymentState, grace_s: float) -> None:
        """Undo `start` after a failed or interrupted wait."""
        ...


def base_state(plan: DeployPlan, mode: str) -> DeploymentState:
    return DeploymentState(
        pid=None, pgid=None, mode=mode, config_path=str(plan.config_path),
        model_dir=str(plan.options.model_dir.absolute()),
        model_name=plan.endpoints.model_name, log_path=str(plan.log_path), started_at=time.time(),
        business_url=plan.endpoints.business_url, management_url=plan.endpoints.management_url,
        metrics_url=plan.endpoints.metrics_url, mindie_home=str(plan.mindie_home),
        deployment_dir=str(plan.deployment_dir))


class HostLauncher:
    """mindieservice_daemon as a child in its own session (its own process group), output to daemon.log."""

    mode = "host"

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, plan: DeployPlan, token: str) -> DeploymentState:
        from mindie_pack.fsutil import describe_os_error, writing

        env = dict(plan.environment)
        env[TOKEN_ENV] = token
        with writing(plan.log_path):
            fd = open_log(plan.log_path)
        try:
            self.proc = subprocess.Popen([str(plan.daemon)], cwd=plan.deployment_dir, env=env, stdout=fd,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        except OSError as exc:
            raise PackError(f"{plan.daemon}: cannot start it: {describe_os_error(exc)}") from exc
        finally:
            os.close(fd)
        state = base_state(plan, self.mode)
        state.pid = state.pgid = self.proc.pid  # start_new_session: the daemon leads its own group
        state.token = token
        found = identify(self.proc.pid)
        if found is not None:
            state.create_time = found.create_time
        return state

    def exit_code(self) -> int | None:
        assert self.proc is not None
        return self.proc.poll()

    def settle(self, state: DeploymentState) -> DeploymentState:
        found = identify(state.pid) if state.pid else None
        if found is not None:  # after the launcher script's exec: the real executable and command line
            state.exe, state.cmdline = found.exe, found.cmdline
        return state

    def abort(self, state: DeploymentState, grace_s: float) -> None:
        if self.proc is None:
            return
        target = find_daemon(state.pid, state.pgid, state.create_time, state.token)
        terminate(target.pids, grace_s)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass


def launcher_for(plan: DeployPlan) -> Launcher:
    if plan.container is not None:
        from mindie_pack.deploy.container import DockerLauncher

        return DockerLauncher()
    if plan.launcher == "mindie_llm_server":  # MindIE >= 3.0
        from mindie_pack.deploy.launcher_llm import MindieLLMServerLauncher

        return MindieLLMServerLauncher()
    return HostLauncher()
