"""`mindie-pack emulator install PREFIX`: an emulated Ascend root whose MindIE runs the emulator daemon."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sys
from pathlib import Path

from mindie_pack.builder.atb_models import SHIPPED_LISTS
from mindie_pack.config.render import default_config
from mindie_pack.env.standin import StandinRoot, StandinVersions, write_standin_ascend_root
from mindie_pack.errors import PackError
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
                     prefill_ms: float = 0.0, per_token_ms: float = 0.0, backend: str | None = None,
                     chip: str | None = None, backups: list[str] | None = None) -> StandinRoot:
    """MindIE <= 2.3: the /usr/local/Ascend-like tree with mindie-service. MindIE >= 3.0: the Ascend root without a
    mindie tree plus a Python environment holding the `mindie_llm` stand-in (emulator/standin_llm.py).

    An edited conf/config.json is backed up, never lost; `backups` (when given) receives one line per file kept."""
    from mindie_pack.emulator.standin_llm import install_mindie_llm_venv, write_atb_llm

    settings = {"fake_model": fake_model, "prefill_ms": prefill_ms, "per_token_ms": per_token_ms,
                "mindie_version": mindie_version}
    if backend is not None:
        settings["backend"] = backend
    if _major(mindie_version) >= 3:
        if backend == "ms":
            raise PackError(f"--backend ms: MindIE {mindie_version} has no ms backend (removed by "
                            "MindIE-LLM 2072a951); "
                            "use --backend atb or torch, or --mindie-version 2.3.0")
        versions = StandinVersions(mindie=mindie_version, cann=CANN_FOR.get(mindie_version, "8.5.1"))
        root = write_standin_ascend_root(prefix.absolute(), versions=versions, npu_count=npu_count, chip=chip,
                                         include={"driver", "toolkit", "nnal"})
        config = default_config(mindie_version)
        config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["backendType"] = backend or "atb"
        venv = install_mindie_llm_venv(root.root, mindie_version=mindie_version,
                                       config_text=json.dumps(config, indent=2) + "\n",
                                       emulator_text=json.dumps(settings, indent=2) + "\n")
        root.mindie_service = venv
        return root
    versions = StandinVersions(mindie=mindie_version, cann=CANN_FOR.get(mindie_version, StandinVersions.cann))
    root = write_standin_ascend_root(prefix.absolute(), versions=versions, npu_count=npu_count, chip=chip)
    if backend in ("atb", "torch") or _major(mindie_version) >= 2:
        # the 2.x atb-models tree holds atb_llm (the oldest model list we hold is 2.3.0's)
        write_atb_llm(root.root / "atb-models" / "atb_llm", SHIPPED_LISTS["2.3.0"][1])
    service = root.mindie_service
    daemon = service / "bin" / "mindieservice_daemon"
    os.chmod(service / "bin", 0o750)
    daemon.unlink(missing_ok=True)  # a reinstall: the old launcher is read-only (0550)
    daemon.write_text(LAUNCHER.format(python=shlex.quote(sys.executable)))
    os.chmod(daemon, 0o550)
    config_text = json.dumps(default_config(mindie_version), indent=2) + "\n"
    _keep_if_edited(service / "conf" / "config.json", config_text, backups)  # emulator.json: ours, from flags
    atomic_write_text(service / "conf" / "config.json", config_text, 0o640)
    atomic_write_text(service / "conf" / "emulator.json", json.dumps(settings, indent=2) + "\n", 0o640)
    return root


# CANN paired with each MindIE release (gitcode Ascend/release-management MindIE/26.0.0/release.md).
CANN_FOR = {"2.1.RC2": "8.2.RC2", "2.2.RC1": "8.3.RC2", "2.3.0": "8.5.0", "3.0.0": "8.5.1"}


def _major(version: str) -> int:
    head = version.split(".")[0]
    return int(head) if head.isdigit() else 0
