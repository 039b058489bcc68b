"""`mindie-pack emulator install PREFIX`: an emulated Ascend root whose MindIE runs the emulator daemon."""

from __future__ import annotations

import json
import os
import shlex
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


def install_emulator(prefix: Path, *, mindie_version: str = "1.0.RC3", npu_count: int = 8, fake_model: bool = False,
                     prefill_ms: float = 0.0, per_token_ms: float = 0.0) -> StandinRoot:
    versions = StandinVersions(mindie=mindie_version)
    root = write_standin_ascend_root(prefix.absolute(), versions=versions, npu_count=npu_count)
    service = root.mindie_service
    daemon = service / "bin" / "mindieservice_daemon"
    os.chmod(service / "bin", 0o750)
    daemon.write_text(LAUNCHER.format(python=shlex.quote(sys.executable)))
    os.chmod(daemon, 0o550)
    atomic_write_text(service / "conf" / "config.json",
                      json.dumps(default_config(mindie_version), indent=2) + "\n", 0o640)
    atomic_write_text(service / "conf" / "emulator.json", json.dumps(
        {"fake_model": fake_model, "prefill_ms": prefill_ms, "per_token_ms": per_token_ms}, indent=2) + "\n", 0o640)
    return root
