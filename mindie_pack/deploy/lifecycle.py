"""deploy: preflight, launch (host or container, one interface), wait with the one readiness loop, record.

The code talks to the daemon only through its documented contract (config file, environment, stdout lines,
HTTP endpoints, signals), so the real daemon and the emulator are the same to it. The pieces live in:
preflight.py (plan), launcher.py / container.py (start), readiness.py (wait), status.py, stop.py, logs.py.
"""

from __future__ import annotations

from mindie_pack.deploy.launcher import Launcher, launcher_for
from mindie_pack.deploy.preflight import DeployOptions, DeployPlan, plan_deploy, write_files
from mindie_pack.deploy.process import new_token, process_alive
from mindie_pack.deploy.readiness import Progress, wait_ready
from mindie_pack.deploy.state import DeploymentState, clear_state, load_state, locked, save_state
from mindie_pack.deploy.status import StatusReport, daemon_running, status
from mindie_pack.deploy.stop import stop, stop_locked
from mindie_pack.errors import PackError

__all__ = ["DeployOptions", "DeployPlan", "Progress", "StatusReport", "deploy", "plan_deploy", "process_alive",
           "status", "stop"]

ABORT_GRACE_S = 5.0


def deploy(options: DeployOptions, progress: Progress | None = None,
           launcher: Launcher | None = None) -> DeploymentState:
    progress = progress or Progress()
    with locked("deploy"):
        _handle_previous(options, progress)
        progress.stage("preflight")
        plan = plan_deploy(options)
        write_files(plan)
        launcher = launcher or launcher_for(plan)
        progress.stage(f"starting {plan.launcher}" + (" in a container" if plan.container else ""))
        state = launcher.start(plan, new_token())
        try:
            save_state(state)
            wait_ready(launcher, plan.endpoints, plan.log_path, timeout_s=options.timeout_s,
                       log_stream_after_s=options.log_stream_after_s, progress=progress)
            state = launcher.settle(state)
            save_state(state)
        except BaseException:
            launcher.abort(state, ABORT_GRACE_S)
            clear_state()
            raise
    return state


def _handle_previous(options: DeployOptions, progress: Progress) -> None:
    previous = load_state(required=False)
    if previous is None:
        return
    running, note = daemon_running(previous)
    if running is False:
        clear_state()  # the recorded daemon is gone: nothing to stop
        return
    where = f"container {(previous.container_id or '?')[:12]}" if previous.mode == "docker" else f"pid {previous.pid}"
    if not options.replace:
        extra = f" ({note})" if note else ""
        raise PackError(f"a deployment is running ({where}, {previous.business_url}, model {previous.model_name})"
                        f"{extra}: stop it first, or pass --replace")
    progress.stage("stopping the previous deployment")
    stop_locked(timeout_s=30)
