"""Low-level file I/O for the weight converter and verifier: positioned reads into reusable buffers, full
writes, and early writeback.

Why not plain `open().read()`/`write()`: the build moves tens to hundreds of GB. Reading each tensor into a
fresh array made the kernel zero a new 2 MiB huge page for every 2 MiB read (numpy madvises large arrays
MADV_HUGEPAGE; with memory full of page cache that fault also compacts or reclaims), and leaving all output
dirty until a final sync made the disk idle during the conversion and then stall at the end. Here reads go
into buffers allocated once, and each written window is handed to the disk at once (`sync_file_range`, which
the os module does not expose, hence ctypes; a no-op where it is missing).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Callable

import numpy as np

WRITEBACK_WINDOW = 32 * 1024 * 1024
_SYNC_FILE_RANGE_WRITE = 2


def _load_sync_file_range() -> Callable[[int, int, int], None] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        function = libc.sync_file_range
    except (OSError, AttributeError):  # pragma: no cover - non-Linux
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    function.restype = ctypes.c_int

    def call(fd: int, offset: int, length: int) -> None:
        function(fd, offset, length, _SYNC_FILE_RANGE_WRITE)  # advisory: errors are ignored

    return call


_sync_file_range = _load_sync_file_range()


def start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing this range to disk now (asynchronously)."""
    if _sync_file_range is not None and length > 0:
        _sync_file_range(fd, offset, length)


def advise_sequential(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)


def pread_exact(fd: int, view: memoryview, offset: int) -> None:
    """Fill `view` from `offset`; EOFError when the file ends first."""
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise EOFError(offset + done)
        done += got


def write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class Buffer:
    """A growable byte buffer that is allocated (and its pages faulted in) once, then reused."""

    def __init__(self, size: int = 0) -> None:
        self._array = np.zeros(0, dtype=np.uint8)
        self.reserve(size)

    def reserve(self, size: int) -> None:
        if size > self._array.size:
            self._array = np.zeros(size, dtype=np.uint8)

    def view(self, size: int) -> memoryview:
        self.reserve(size)
        return memoryview(self._array[:size])


class SequentialHash:
    """sha256 of a whole file, fed by reads that arrive (mostly) in file order; bytes skipped over (headers,
    tensors nobody needs) are read and hashed here, bytes read twice are hashed once: the file is read once."""

    def __init__(self, fd: int, buffer: Buffer, step: int = WRITEBACK_WINDOW) -> None:
        import hashlib

        self._fd, self._buffer, self._step = fd, buffer, step
        self.sha = hashlib.sha256()
        self.upto = 0
        self.size = os.fstat(fd).st_size

    def _catch_up(self, offset: int) -> None:
        while self.upto < offset:
            size = min(self._step, offset - self.upto)
            view = self._buffer.view(size)
            pread_exact(self._fd, view, self.upto)
            self.sha.update(view)
            self.upto += size

    def job_for(self, offset: int, data: memoryview) -> Callable[[], None] | None:
        """Hash job for bytes just read at `offset` (None when they were hashed already). Jobs of one file
        must run in the order they were made, each before the next `job_for`."""
        if offset + len(data) <= self.upto:
            return None
        self._catch_up(offset)
        data = data[self.upto - offset:]
        self.upto += len(data)
        sha = self.sha
        return lambda: sha.update(data)

    def hexdigest(self) -> str:
        self._catch_up(self.size)
        return self.sha.hexdigest()
