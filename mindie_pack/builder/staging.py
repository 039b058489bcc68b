"""Build into a temporary sibling folder and swap it in only when complete, with MindIE's permissions.

MindIE refuses a modelWeightPath that is group/world-writable (mindie-service.md §1.6): folders are 0750,
files 0640.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from types import TracebackType

from mindie_pack.errors import PackError

DIR_MODE = 0o750
FILE_MODE = 0o640


class StagedDirectory:
    """`with StagedDirectory(final, force) as staging:` write under `staging.path`, then `commit()`.

    Leaving the block without commit (an error, Ctrl-C) removes the temporary folder; the previous
    output, if any, is untouched until the new one is complete.
    """

    def __init__(self, final: Path, *, force: bool) -> None:
        self.final = final.absolute()
        self.force = force
        self.path: Path | None = None
        self._committed = False

    def __enter__(self) -> StagedDirectory:
        if self.final.exists() or self.final.is_symlink():
            if not self.force:
                raise PackError(f"{self.final}: output directory already exists; pass --force to replace it")
            if not self.final.is_dir() or self.final.is_symlink():
                raise PackError(f"{self.final}: exists and is not a directory; refusing to replace it")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.partial-", dir=self.final.parent))
        os.chmod(self.path, DIR_MODE)
        return self

    def commit(self) -> None:
        assert self.path is not None
        apply_modes(self.path)
        old: Path | None = None
        if self.final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{self.final.name}.old-", dir=self.final.parent))
            os.rmdir(old)
            os.rename(self.final, old)
        os.rename(self.path, self.final)
        self._committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self._committed and self.path is not None:
            shutil.rmtree(self.path, ignore_errors=True)


def apply_modes(root: Path) -> None:
    os.chmod(root, DIR_MODE)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), DIR_MODE)
        for name in files:
            os.chmod(os.path.join(folder, name), FILE_MODE)
