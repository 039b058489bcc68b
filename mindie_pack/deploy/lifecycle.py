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
DETACH_SETTLE_S = 2.0  # how long --detach watches a fresh daemon for an early death before returning


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
        state.role = plan.role
        try:
            save_state(state)
            if options.detach:
                _wait_started(launcher, plan)
                return state
            wait_ready(launcher, plan.endpoints, plan.log_path, timeout_s=options.timeout_s,
                       log_stream_after_s=options.log_stream_after_s, progress=progress, serves=plan.serves)
            state = launcher.settle(state)
            save_state(state)
        except BaseException:
            launcher.abort(state, ABORT_GRACE_S)
            clear_state()
            raise
    return state


def _wait_started(launcher: Launcher, plan: DeployPlan) -> None:
    """--detach: return once the daemon has read its config and is past its config checks (or has died)."""
    import time

    from mindie_pack.deploy.logs import LogFollower
    from mindie_pack.deploy.readiness import FATAL_LINES, failure

    log = LogFollower(plan.log_path)
    deadline = time.monotonic() + DETACH_SETTLE_S
    while time.monotonic() < deadline:
        code = launcher.exit_code()
        if code is not None:
            raise failure(f"the daemon exited with code {code}", plan.log_path)
        lines = log.new_lines()
        if any(f in line for line in lines for f in FATAL_LINES):
            raise failure("the daemon reported a failure at start", plan.log_path)
        time.sleep(0.1)


def _handle_previous(options: DeployOptions, progress: Progress) -> None:
    previous = load_state(required=False)
    if previous is None:
        return
    if previous.mode == "cluster":  # recorded by `deploy --hosts` on this controller
        from mindie_pack.deploy.cluster.record import clear_previous_cluster

        progress.stage("stopping the previous multi-node deployment")
        clear_previous_cluster(options.replace)
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
