"""Shared pieces of the config tests: the published fixture pointed at a real built model directory."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from conftest import REPO_ROOT

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "config" / "mindformers-llm-boost-1.0.RC3.json"


def published_config(model_dir: Path) -> dict[str, Any]:
    data = json.loads(FIXTURE.read_text())
    data["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["modelWeightPath"] = str(model_dir)
    return data


def variant(data: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A deep copy with one field (dotted path, [i] for lists) replaced."""
    result = copy.deepcopy(data)
    node: Any = result
    parts: list[str | int] = []
    for piece in path.split("."):
        name, _, rest = piece.partition("[")
        parts.append(name)
        parts += [int(i) for i in filter(None, rest.replace("]", "").split("["))]
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value
    return result
