"""Build into a temporary sibling folder and swap it in only when complete, with MindIE's permissions.

MindIE refuses a modelWeightPath that is group/world-writable (mindie-service.md §1.6): folders are 0750,
files 0640.

The temporary folders are named `.NAME.partial-PID-START-RANDOM` (and `.NAME.old-PID-START-RANDOM` for the
previous output during the swap), PID and START (the process start time) identifying the build that owns
them. A later build removes the ones whose owner is gone (a SIGKILLed build cannot clean up after itself),
and puts back a previous output that a killed swap left aside.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType, TracebackType

import psutil

from mindie_pack.errors import PackError

DIR_MODE = 0o750
FILE_MODE = 0o640
PARTIAL, OLD = "partial", "old"
# Staging folders of older mindie-pack versions carry no owner; they count as stale once nothing in them
# changed for this long.
_LEGACY_STALE_SECONDS = 15 * 60


def _process_start(pid: int) -> int | None:
    try:
        return int(psutil.Process(pid).create_time())
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _temp_name(final: Path, kind: str) -> str:
    pid = os.getpid()
    return f".{final.name}.{kind}-{pid}-{_process_start(pid) or 0}-{random.randrange(16**8):08x}"


def _owner_alive(name: str, prefix: str) -> bool | None:
    """True/False when the folder name carries an owner (PID-START-RANDOM), None for legacy names."""
    parts = name[len(prefix):].split("-")
    if len(parts) != 3 or not (parts[0].isdigit() and parts[1].isdigit()):
        return None
    pid, start = int(parts[0]), int(parts[1])
    current = _process_start(pid)
    return current is not None and abs(current - start) <= 1


def _newest_mtime(root: Path) -> float:
    newest = root.lstat().st_mtime
    for folder, _, files in os.walk(root):
        for name in files:
            try:
                newest = max(newest, os.lstat(os.path.join(folder, name)).st_mtime)
            except OSError:
                pass
    return newest


def _is_stale(path: Path, prefix: str) -> bool:
    alive = _owner_alive(path.name, prefix)
    if alive is None:
        return time.time() - _newest_mtime(path) > _LEGACY_STALE_SECONDS
    return not alive


def clean_stale(final: Path) -> list[str]:
    """Remove temporary folders of dead builds next to `final`; restore a previous output left aside by a
    swap that was killed between its two renames. Returns notes on what was done."""
    notes: list[str] = []
    parent = final.parent
    if not parent.is_dir():
        return notes
    partial_prefix, old_prefix = f".{final.name}.{PARTIAL}-", f".{final.name}.{OLD}-"
    for path in sorted(parent.iterdir()):
        if not path.is_dir() or path.is_symlink():
            continue
        if path.name.startswith(old_prefix) and _is_stale(path, old_prefix):
            if not final.exists() and not final.is_symlink():
                os.rename(path, final)
                notes.append(f"restored {final} from {path.name} (an interrupted build had moved it aside)")
            else:
                shutil.rmtree(path, ignore_errors=True)
                notes.append(f"removed {path.name} (previous output left by an interrupted build)")
        elif path.name.startswith(partial_prefix) and _is_stale(path, partial_prefix):
            shutil.rmtree(path, ignore_errors=True)
            notes.append(f"removed {path.name} (left by an interrupted build)")
    return notes


def fsync_tree(root: Path) -> None:
    """Flush every file and folder under `root` (files first), so a rename cannot publish lost data."""
    for folder, _, files in os.walk(root, topdown=False):
        for name in files:
            fd = os.open(os.path.join(folder, name), os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(folder))


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StagedDirectory:
    """`with StagedDirectory(final, force) as staging:` write under `staging.path`, then `commit()`.

    Leaving the block without commit (an error, Ctrl-C, SIGTERM) removes the temporary folder; the previous
    output, if any, is untouched until the new one is complete.
    """

    def __init__(self, final: Path, *, force: bool) -> None:
        self.final = final.absolute()
        self.force = force
        self.path: Path | None = None
        self.notes: list[str] = []
        self._committed = False

    def __enter__(self) -> StagedDirectory:
        self.notes = clean_stale(self.final)
        if self.final.exists() or self.final.is_symlink():
            if not self.force:
                raise PackError(f"{self.final}: output directory already exists; pass --force to replace it")
            if not self.final.is_dir() or self.final.is_symlink():
                raise PackError(f"{self.final}: exists and is not a directory; refusing to replace it")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        path = self.final.parent / _temp_name(self.final, PARTIAL)
        os.mkdir(path, DIR_MODE)
        self.path = path
        return self

    def commit(self) -> None:
        """Rename the previous output aside, the new one in, then delete the previous one. If the second
        rename fails, the previous output is put back; at no point is data lost."""
        assert self.path is not None
        apply_modes(self.path)
        fsync_tree(self.path)
        old: Path | None = None
        if self.final.exists():
            old = self.final.parent / _temp_name(self.final, OLD)
            os.rename(self.final, old)
        try:
            os.rename(self.path, self.final)
        except BaseException:
            if old is not None:
                os.rename(old, self.final)
            raise
        self._committed = True
        fsync_dir(self.final.parent)
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


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """Within the block SIGTERM raises KeyboardInterrupt, like Ctrl-C, so cleanup code runs (main thread
    only; elsewhere a no-op). The previous handler is restored afterwards."""
    try:
        previous = signal.getsignal(signal.SIGTERM)

        def handler(signum: int, frame: FrameType | None) -> None:
            raise KeyboardInterrupt(f"signal {signum}")

        signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def link_or_copy(source: Path, destination: Path) -> bool:
    """Place `source` at `destination` unchanged: a hard link when that cannot change what MindIE checks of the
    source (mode already FILE_MODE, owner us or we are root), else a copy. True when linked."""
    info = source.stat()
    if (info.st_mode & 0o7777) == FILE_MODE and (os.getuid() == 0 or info.st_uid == os.getuid()):
        try:
            os.link(source, destination)
            return True
        except OSError:
            pass  # another file system, or links not allowed: copy
    shutil.copyfile(source, destination)
    return False
