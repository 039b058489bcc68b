"""The package layout survives the ordinary Python tooling: no package folder is ignored by git."""
from __future__ import annotations

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_module_is_tracked_and_not_ignored() -> None:
    modules = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "mindie_pack").rglob("*.py")
                     if "__pycache__" not in p.parts)
    ignored = subprocess.run(["git", "check-ignore", "--no-index", *modules], cwd=ROOT,
                             capture_output=True, text=True).stdout.split()
    assert ignored == [], f"ignored by .gitignore: {ignored}"
    tracked = set(subprocess.run(["git", "ls-files", "mindie_pack"], cwd=ROOT, capture_output=True,
                                 text=True, check=True).stdout.split())
    untracked = [m for m in modules if m not in tracked]
    assert untracked == [], f"not tracked by git: {untracked}"
