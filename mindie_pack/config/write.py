"""Writing config.json: atomically, mode 0640, a timestamped backup of what it replaces, and a .diff that
records what mindie-pack set versus the version's default config."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from mindie_pack.config.render import default_config
from mindie_pack.fsutil import atomic_write_text  # noqa: F401 - re-exported for older callers


@dataclass(frozen=True)
class WriteResult:
    path: Path
    backup: Path | None
    diff_path: Path


def flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    """JSON path -> leaf value (lists of scalars stay whole: they are one setting)."""
    if isinstance(data, dict):
        out: dict[str, Any] = {}
        for key, value in data.items():
            out.update(flatten(value, f"{prefix}.{key}" if prefix else key))
        return out
    if isinstance(data, list) and any(isinstance(v, dict) for v in data):
        out = {}
        for index, value in enumerate(data):
            out.update(flatten(value, f"{prefix}[{index}]"))
        return out
    return {prefix: data}


def diff_lines(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """One line per changed JSON path: `PATH: OLD -> NEW` (absent values shown as <absent>)."""
    a, b = flatten(before), flatten(after)
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, ...) != b.get(key, ...):
            old = json.dumps(a[key]) if key in a else "<absent>"
            new = json.dumps(b[key]) if key in b else "<absent>"
            lines.append(f"{key}: {old} -> {new}")
    return lines


def backup_path(path: Path) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}.{stamp}.bak")
    counter = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.{stamp}-{counter}.bak")
        counter += 1
    return candidate


def write_config(data: dict[str, Any], path: Path, *, version: str) -> WriteResult:
    path.parent.mkdir(parents=True, exist_ok=True)
    backup = None
    if path.exists() or path.is_symlink():
        backup = backup_path(path)
        shutil.copy2(path, backup, follow_symlinks=True)
        os.chmod(backup, 0o640)
    atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    header = [f"# {path.name}: what mindie-pack set, versus MindIE {version}'s default config.json",
              "# PATH: DEFAULT -> OURS"]
    diff_path = path.with_name(path.name + ".diff")
    atomic_write_text(diff_path, "\n".join(header + diff_lines(default_config(version), data)) + "\n")
    return WriteResult(path, backup, diff_path)
