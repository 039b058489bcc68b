"""Checks against the compatibility matrix in compat.yaml."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml


@cache
def matrix() -> list[dict[str, Any]]:
    return list(yaml.safe_load((Path(__file__).with_name("compat.yaml")).read_text())["rows"])


def _matches(actual: str | None, expected: str) -> bool:
    if actual is None:
        return False
    a, e = actual.lower().replace("-", "").replace("rc", ".rc"), expected.lower().replace("-", "").replace("rc", ".rc")
    return a == e or a.startswith(e + ".") or a.startswith(e)


def row_for(mindie_version: str | None) -> dict[str, Any] | None:
    if not mindie_version:
        return None
    return next((row for row in matrix() if _matches(mindie_version, str(row["mindie"]))), None)


@dataclass
class Mismatch:
    component: str
    found: str | None
    expected: str
    confirmed: bool


def compat_mismatches(mindie_version: str | None, found: dict[str, str | None]) -> list[Mismatch]:
    """found: {"cann": ..., "mindspore": ..., "mindformers": ..., "python": "3.11"}."""
    row = row_for(mindie_version)
    if row is None:
        return []
    out = []
    for key in ("cann", "mindspore", "mindformers"):
        if not _matches(found.get(key), str(row[key])):
            out.append(Mismatch(key, found.get(key), str(row[key]), bool(row["confirmed"])))
    python = found.get("python")
    if python and python not in row["python"]:
        out.append(Mismatch("python", python, " or ".join(row["python"]), bool(row["confirmed"])))
    return out
