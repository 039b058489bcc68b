"""The daemon log: created with its mode, followed incrementally, tailed. One follower for every reader."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from mindie_pack.deploy.state import LOG_MODE


def open_log(path: Path) -> int:
    """An append-only descriptor on the log, created 0640 (umask cannot widen it)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, LOG_MODE)
    os.fchmod(fd, LOG_MODE)
    return fd


class LogFollower:
    """The log's new complete lines on each call (the file is read once, incrementally)."""

    def __init__(self, path: Path, *, from_end: bool = False) -> None:
        self.path = path
        self._offset = path.stat().st_size if from_end and path.is_file() else 0
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return []
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        return [line.decode(errors="replace") for line in complete]

    def follow(self, keep_going: Callable[[], bool] = lambda: True, poll_s: float = 0.2) -> Iterator[str]:
        """Lines as they are written, until `keep_going()` is false (Ctrl-C ends it in the CLI)."""
        while keep_going():
            lines = self.new_lines()
            yield from lines
            if not lines:
                time.sleep(poll_s)


def tail(path: Path, lines: int = 30) -> list[str]:
    """The last `lines` lines of the log (read from the end: the log of a long run can be large)."""
    if lines <= 0:
        return []
    try:
        with path.open("rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            block = 64 * 1024
            data = b""
            while size > 0 and data.count(b"\n") <= lines:
                step = min(block, size)
                size -= step
                handle.seek(size)
                data = handle.read(step) + data
    except OSError:
        return []
    return [line.decode(errors="replace") for line in data.splitlines()[-lines:]]
