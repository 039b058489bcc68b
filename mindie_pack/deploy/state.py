"""The deployment state file: what `status`, `logs`, `stop` and `smoke` need, readable from any shell."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from mindie_pack.errors import PackError

STATE_ENV = "MINDIE_PACK_STATE_DIR"


def state_dir() -> Path:
    return Path(os.environ.get(STATE_ENV) or Path.home() / ".local" / "state" / "mindie-pack")


def state_path() -> Path:
    return state_dir() / "deployment.json"


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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def save_state(state: DeploymentState) -> Path:
    from mindie_pack.config.write import atomic_write_text

    path = state_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(state.to_dict(), indent=2) + "\n", 0o600)
    return path


def load_state(required: bool = True) -> DeploymentState | None:
    path = state_path()
    if not path.is_file():
        if required:
            raise PackError(f"no deployment recorded ({path} not found): run `mindie-pack deploy` first")
        return None
    try:
        return DeploymentState(**json.loads(path.read_text()))
    except (json.JSONDecodeError, TypeError) as exc:
        raise PackError(f"{path}: unreadable deployment state ({exc}); remove it if no service runs") from exc


def clear_state() -> None:
    state_path().unlink(missing_ok=True)
