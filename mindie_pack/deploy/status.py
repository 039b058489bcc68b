"""`status`: is the recorded daemon (or container) still ours and running, and does it answer /health."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from mindie_pack.deploy.state import DeploymentState, load_state


@dataclass
class StatusReport:
    state: DeploymentState
    process_alive: bool
    healthy: bool
    models: list[str] | None
    uptime_s: float
    note: str = ""

    @property
    def up(self) -> bool:
        return self.process_alive and self.healthy

    def to_dict(self) -> dict[str, Any]:
        return {"up": self.up, "process_alive": self.process_alive, "healthy": self.healthy, "models": self.models,
                "uptime_s": round(self.uptime_s, 1), "note": self.note, **self.state.to_dict()}


def daemon_running(state: DeploymentState) -> tuple[bool | None, str]:
    """Whether the recorded daemon still runs: for a container the engine is asked; for a host process its
    identity (pid + start time) must match. None when it cannot be told."""
    if state.mode == "docker":
        from mindie_pack.deploy.container import container_running

        running = container_running(state.container_id)
        if running is None:
            return None, f"cannot ask Docker about container {(state.container_id or '?')[:12]}"
        return running, "" if running else f"container {(state.container_id or '?')[:12]} is not running"
    from mindie_pack.deploy.process import START_TIME_SLACK_S, identify

    found = identify(state.pid) if state.pid else None
    if found is None:
        return False, f"pid {state.pid} is not running"
    if state.create_time is not None and abs(found.create_time - state.create_time) > START_TIME_SLACK_S:
        return False, f"pid {state.pid} is now another process (the daemon is gone)"
    return True, ""


def status() -> StatusReport:
    from mindie_pack.deploy.health import healthy

    state = load_state()
    assert state is not None
    running, note = daemon_running(state)
    ok, models = healthy(state) if running is not False else (False, None)
    return StatusReport(state, bool(running), ok, models, time.time() - state.started_at, note)
