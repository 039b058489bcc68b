"""`mindie-pack emulator install PREFIX`: an emulated Ascend root whose MindIE runs the emulator daemon."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from mindie_pack.config.render import default_config
from mindie_pack.env.standin import StandinRoot, StandinVersions, write_standin_ascend_root
from mindie_pack.fsutil import atomic_write_text

LAUNCHER = """#!/bin/sh
# mindieservice_daemon of the mindie-pack emulator (a MindIE stand-in for machines without NPUs).
MINDIE_EMULATOR_HOME=$(cd "$(dirname "$0")/.." && pwd)
export MINDIE_EMULATOR_HOME
exec {python} -m mindie_pack.emulator.daemon "$@"
"""


def _keep_if_edited(path: Path, new_text: str, backups: list[str] | None) -> None:
    """An existing file that differs from what we are about to write is copied to a timestamped .bak first."""
    if not path.is_file() or path.read_text(errors="replace") == new_text:
        return
    from mindie_pack.config.write import backup_path

    backup = backup_path(path)
    shutil.copy2(path, backup)
    os.chmod(backup, 0o640)
    if backups is not None:
        backups.append(f"{path} differed from the default: kept as {backup}")


def install_emulator(prefix: Path, *, mindie_version: str = "1.0.RC3", npu_count: int = 8, fake_model: bool = False,
                     prefill_ms: float = 0.0, per_token_ms: float = 0.0,
                     backups: list[str] | None = None) -> StandinRoot:
    """Write the emulated install; an edited conf/config.json is backed up, never lost.

    `backups` (when given) receives one line per file kept."""
    config_text = json.dumps(default_config(mindie_version), indent=2) + "\n"
    settings_text = json.dumps({"fake_model": fake_model, "prefill_ms": prefill_ms, "per_token_ms": per_token_ms},
                               indent=2) + "\n"
    versions = StandinVersions(mindie=mindie_version)
    root = write_standin_ascend_root(prefix.absolute(), versions=versions, npu_count=npu_count)
    service = root.mindie_service
    daemon = service / "bin" / "mindieservice_daemon"
    os.chmod(service / "bin", 0o750)
    daemon.unlink(missing_ok=True)  # a reinstall: the old launcher is read-only (0550)
    daemon.write_text(LAUNCHER.format(python=shlex.quote(sys.executable)))
    os.chmod(daemon, 0o550)
    _keep_if_edited(service / "conf" / "config.json", config_text, backups)  # emulator.json: ours, from flags
    atomic_write_text(service / "conf" / "config.json", config_text, 0o640)
    atomic_write_text(service / "conf" / "emulator.json", settings_text, 0o640)
    return root
