"""The deployment state file: what `status`, `logs`, `stop` and `smoke` need, readable from any shell.

It also records who the daemon is (pid, process group, start time, executable, a per-deployment token in its
environment) so `stop` can refuse to signal anything else, and a lock so two deploy/stop runs cannot race.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mindie_pack.errors import PackError

STATE_ENV = "MINDIE_PACK_STATE_DIR"
STATE_DIR_MODE = 0o750
LOG_MODE = 0o640


def state_dir() -> Path:
    return Path(os.environ.get(STATE_ENV) or Path.home() / ".local" / "state" / "mindie-pack")


def state_path() -> Path:
    return state_dir() / "deployment.json"


def ensure_state_dir() -> Path:
    from mindie_pack.fsutil import make_dirs

    return make_dirs(state_dir(), STATE_DIR_MODE)


@dataclass
class DeploymentState:
    pid: int | None
    pgid: int | None
    mode: str  # host | docker
    config_path: str
    model_dir: str
    model_name: str
    log_path: str
    started_at: float
    business_url: str
    management_url: str
    metrics_url: str
    mindie_home: str
    deployment_dir: str
    container_id: str | None = None
    # identity of the daemon process (host mode), recorded at start; see deploy/process.py
    create_time: float | None = None
    exe: str | None = None
    cmdline: list[str] | None = None
    token: str | None = None
    role: str | None = None  # master | worker on a multi-node deployment
    cluster: dict[str, Any] | None = None  # mode "cluster": the nodes (deploy/cluster/)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def save_state(state: DeploymentState) -> Path:
    from mindie_pack.fsutil import atomic_write_text, writing

    path = state_path()
    ensure_state_dir()
    with writing(path):
        atomic_write_text(path, json.dumps(state.to_dict(), indent=2) + "\n", 0o600)
    return path


def load_state(required: bool = True) -> DeploymentState | None:
    path = state_path()
    if not path.is_file():
        if required:
            raise PackError(f"no deployment recorded ({path} not found): run `mindie-pack deploy` first")
        return None
    known = {f.name for f in dataclasses.fields(DeploymentState)}
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise TypeError("not a JSON object")
        return DeploymentState(**{k: v for k, v in data.items() if k in known})
    except (OSError, ValueError, TypeError) as exc:
        raise PackError(f"{path}: unreadable deployment state ({exc}); remove it if no service runs") from exc


def clear_state() -> None:
    state_path().unlink(missing_ok=True)


@contextmanager
def locked(command: str) -> Iterator[None]:
    """Hold the deployment lock for the whole of `deploy`/`stop`; a second run is refused at once, in one line."""
    from filelock import FileLock, Timeout

    ensure_state_dir()
    lock_path = state_dir() / "deployment.lock"
    lock = FileLock(str(lock_path), timeout=0, mode=0o600)
    try:
        lock.acquire()
    except Timeout:
        raise PackError(f"another mindie-pack deploy or stop is running (lock {lock_path} is held); wait for it "
                        f"to finish, then run `mindie-pack {command}` again") from None
    except OSError as exc:
        from mindie_pack.fsutil import output_error

        raise output_error(lock_path, exc, "cannot take the deployment lock") from exc
    try:
        yield
    finally:
        lock.release()
