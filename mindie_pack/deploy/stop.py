"""`stop`: graceful /stopService, then SIGTERM to the daemon's verified processes, one grace period for all of
them, SIGKILL to what is left; our /dev/shm segments removed. Nothing is signalled that we did not start."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from mindie_pack.deploy.state import clear_state, load_state, state_path
from mindie_pack.errors import PackError

SHM_PATTERNS = ("*llm_backend_*", "llm_tokenizer_shared_memory_*")
EXIT_AFTER_STOP_SERVICE_S = 2.0  # a daemon that exits by itself after /stopService needs no SIGTERM


def stop_locked(timeout_s: float = 30.0) -> dict[str, Any]:
    """Stop the recorded deployment; the caller holds the deployment lock."""
    from mindie_pack.deploy.health import request_stop_service
    from mindie_pack.deploy.process import find_daemon, terminate, unsafe_group, wait_gone

    state = load_state()
    assert state is not None
    findings: list[str] = []
    signalled: list[int] = []
    killed: list[int] = []
    if state.mode == "docker" and state.container_id:
        graceful = request_stop_service(state, timeout_s)
        from mindie_pack.deploy.container import stop_container

        stop_container(state.container_id, timeout_s)
    else:
        reason = unsafe_group(state.pgid)
        if reason:
            raise PackError(f"{state_path()}: {reason}: refusing to signal anything (the state file is damaged or "
                            "not ours; remove it if no service runs)")
        target = find_daemon(state.pid, state.pgid, state.create_time, state.token)
        findings += target.findings
        graceful = request_stop_service(state, timeout_s) if target.pids else False
        pids = wait_gone(target.pids, EXIT_AFTER_STOP_SERVICE_S) if graceful else target.pids
        signalled = pids
        killed = terminate(pids, timeout_s) if pids else []
    removed = clean_shm(state.started_at)
    clear_state()
    return {"stopped": state.model_name, "pid": state.pid, "container_id": state.container_id,
            "graceful_stop_service": graceful,
            "signalled": signalled, "killed": killed, "findings": findings, "shm_removed": removed}


def stop(timeout_s: float = 30.0) -> dict[str, Any]:
    from mindie_pack.deploy.state import locked

    with locked("stop"):
        return stop_locked(timeout_s)


def clean_shm(since: float, shm: Path = Path("/dev/shm")) -> list[str]:
    removed = []
    uid = os.getuid()
    for pattern in SHM_PATTERNS:
        for path in shm.glob(pattern):
            try:
                info = path.stat()
                if info.st_uid == uid and info.st_mtime >= since - 1:  # only this deployment's, only ours
                    path.unlink()
                    removed.append(path.name)
            except OSError:
                continue
    return removed


