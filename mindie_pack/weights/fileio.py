"""Low-level file I/O for the weight converter and verifier: positioned reads into reusable buffers, hashing
beside the reads, and write-behind sequential writes.

Why not plain `open().read()`/`write()`: the build moves tens to hundreds of GB. Reading each tensor into a
fresh array made the kernel zero new (huge) pages for every tensor (numpy madvises large arrays
MADV_HUGEPAGE; with memory full of page cache such a fault also compacts or reclaims), and plain buffered
writes let dirty pages pile up until the kernel throttled the build (see StreamWriter). Here reads go into
buffers allocated once and outputs are written behind in 32 MiB windows.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path

import numpy as np

from mindie_pack.hashing import INPUT_HASH, OUTPUT_HASH, new_hasher
from mindie_pack.weights import libc

HASH_STEP = 8 * 1024 * 1024


def advise_sequential(fd: int) -> None:
    if hasattr(os, "posix_fadvise"):
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_SEQUENTIAL)


def advise_willneed(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start reading [offset, offset + length) now (it does not wait for the reads)."""
    if hasattr(os, "posix_fadvise") and length > 0:
        os.posix_fadvise(fd, offset, length, os.POSIX_FADV_WILLNEED)


def prefetch_start(paths: list[Path], length: int) -> None:
    """Start reading the first `length` bytes of each file into the page cache, on a daemon thread (the
    kernel may block while it queues the reads); returns at once. A file that cannot be opened is skipped:
    whoever reads it next reports that."""
    import threading

    def run() -> None:
        for path in paths:
            try:
                fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError:
                continue
            try:
                advise_willneed(fd, 0, length)
            finally:
                os.close(fd)

    threading.Thread(target=run, name="prefetch", daemon=True).start()


def pread_exact(fd: int, view: memoryview, offset: int) -> None:
    """Fill `view` from `offset`; EOFError when the file ends first."""
    done = 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got == 0:
            raise EOFError(offset + done)
        done += got


def map_range(fd: int, offset: int, length: int) -> memoryview:
    """A read-only view of bytes [offset, offset + length) of a file, mapped (MAP_POPULATE: read in now, like
    a read, but without copying them out of the page cache). The mapping lives as long as a view of it does;
    the caller checks the range lies within the file (touching a mapped page past the end is SIGBUS)."""
    import mmap

    if length == 0:
        return memoryview(b"")
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    mapping = mmap.mmap(fd, offset + length - start, flags=mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0),
                        prot=mmap.PROT_READ, offset=start)
    return memoryview(mapping)[offset - start:]


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
    """The hash (sha256 unless told) of a whole file, taken in file order beside reads that arrive (mostly) in
    file order: bytes skipped over (headers, tensors nobody needs) are hashed with the range that follows
    them, bytes read twice are hashed once.

    `job_for` only books a range; the returned job maps the file's bytes itself and hashes them, so the
    caller's buffer is free at once and jobs can run on another thread, trailing the caller's reads by as
    much as the caller allows: the bytes are still in the page cache then, the file is read from disk once.
    Jobs of one file must run one at a time, in the order they were made."""

    def __init__(self, fd: int, algorithm: str = INPUT_HASH, step: int = HASH_STEP) -> None:
        self._fd, self._step = fd, step
        self.hasher = new_hasher(algorithm)
        self.upto = 0  # bytes booked so far
        self.size = os.fstat(fd).st_size

    def _hash_range(self, start: int, end: int) -> None:
        end = min(end, self.size)  # a mapped page past the end of the file is SIGBUS
        while start < end:
            length = min(self._step, end - start)
            self.hasher.update(map_range(self._fd, start, length))
            start += length

    def job_for(self, offset: int, length: int, view: memoryview | None = None) -> Callable[[], None] | None:
        """Hash job for the bytes up to `offset + length` (None when they were booked already). `view`: those
        `length` bytes, already mapped or read by the caller (kept until the job has run), hashed from there
        instead of being mapped again; only a gap before `offset` is mapped then."""
        end = offset + length
        if end <= self.upto:
            return None
        start, self.upto = self.upto, end
        if view is None:
            def job() -> None:
                self._hash_range(start, end)
        else:
            if len(view) != length:
                raise ValueError(f"view of {len(view)} bytes for a range of {length}")

            def job() -> None:
                self._hash_range(start, offset)
                self.hasher.update(view[max(0, start - offset):])

        return job

    def hexdigest(self) -> str:
        """The whole file's hash; every job made so far must have run."""
        self._hash_range(self.upto, self.size)
        self.upto = self.size
        return self.hasher.hexdigest()


class TrailingJobs:
    """Jobs (hash jobs) run in submission order on `executor` (one worker), trailing the caller by at most
    `lag` jobs: the caller waits only when it is that far ahead. Without an executor each job runs at once."""

    def __init__(self, executor: Executor | None, lag: int) -> None:
        from collections import deque

        self._executor, self._lag = executor, lag
        self._pending: deque[Future[None]] = deque()

    def submit(self, job: Callable[[], None] | None) -> None:
        if job is None:
            return
        if self._executor is None:
            job()
            return
        self._pending.append(self._executor.submit(job))
        while len(self._pending) > self._lag:
            self._pending.popleft().result()

    def drain(self) -> None:
        """Wait for every job submitted so far (re-raising the first failure)."""
        while self._pending:
            self._pending.popleft().result()


WRITE_BUFFER = 4 * 1024 * 1024
OWNED_MIN = 256 * 1024  # smaller owned pieces are copied like any other
_IOV_MAX = 1024  # Linux's limit of buffers per pwritev
WRITE_WINDOW = 32 * 1024 * 1024
_SYNC_WAIT_BEFORE, _SYNC_WRITE, _SYNC_WAIT_AFTER = 1, 2, 4  # sync_file_range(2) flags


def _load_sync_file_range() -> Callable[[int, int, int, int], int] | None:
    """sync_file_range(2) (Linux) as fd, offset, length, flags -> errno (0: done); None elsewhere."""
    import ctypes

    function = libc.function("sync_file_range", ctypes.c_int, [ctypes.c_int, ctypes.c_int64, ctypes.c_int64,
                                                               ctypes.c_uint])
    if function is None:
        return None

    def call(fd: int, offset: int, length: int, flags: int) -> int:
        return ctypes.get_errno() if function(fd, offset, length, flags) != 0 else 0

    return call


class StreamWriter:
    """A sequential file writer with write-behind: bounded dirty memory, the disk busy all along, and the
    hash of what it wrote (`digest`, XXH3-128: mindie_pack/hashing.py).

    Why by hand (no library does this): on our benchmark disk a plain buffered `write()` of 2 GB ran at
    ~300 MB/s with 4 s of kernel time (the dirty pages pile up until the kernel throttles the writer and
    reclaims memory; the build's bimodal 7-10 s mode), and O_DIRECT (the previous design) at 300-430 MB/s:
    each direct write waits for the device, and deeper queues did not help. `cp && sync` ran at ~550 MB/s.
    Write-behind matches `cp`: every 32 MiB window is handed to writeback as soon as it is full
    (sync_file_range WRITE), the window before it is waited for and dropped from the page cache
    (POSIX_FADV_DONTNEED), so at most two windows are dirty and a model larger than RAM does not push
    everything else out of the cache.

    Small pieces (record headers) are gathered in `buffers` 4 MiB buffers; a large piece the caller promises
    not to change (`owned=True`: a mapped input block, a fresh cast result) is not copied at all. Each full
    buffer or owned piece goes to two background threads at once, one hashing it, one writing it, while the
    caller goes on; the caller waits when more than `buffers` x 4 MiB are in flight. The hash lives here
    because when the caller hashed between writes, the disk sat idle during every hash step. Without
    sync_file_range (not Linux) the writes are plain; `close(sync=True)` still returns only when the data is
    on disk.
    """

    def __init__(self, path: str | os.PathLike[str], mode: int = 0o640, *, buffers: int = 2) -> None:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        self.digest = new_hasher(OUTPUT_HASH)  # of every byte written, in order
        self._free = [bytearray(WRITE_BUFFER) for _ in range(max(2, buffers))]
        self._limit = len(self._free) * WRITE_BUFFER  # bytes handed to the threads and not yet done
        self._pending: deque[tuple[Future[None], Future[None], bytearray | None, int]] = deque()
        self._in_flight = 0
        self._current: bytearray | None = None
        self._fill = 0
        self._offset = 0  # file offset of the next piece handed to the threads
        self._kicked = 0  # writer thread: windows before this offset are handed to writeback
        self._sync_range = _SYNC_FILE_RANGE
        self.size = 0
        # One thread each: the hashes must be taken in file order, and the writes are sequential.
        self._hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-hash")
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="write-behind")

    def _pwrite_all(self, view: memoryview, offset: int) -> None:
        done = 0
        while done < len(view):
            done += os.pwrite(self._fd, view[done:], offset + done)

    def _write_at(self, views: list[memoryview], offset: int) -> None:
        """Write `views` one after the other from `offset` (pwritev: a whole buffer, or a column split's rows
        without gathering them)."""
        for first in range(0, len(views), _IOV_MAX):
            batch = views[first:first + _IOV_MAX]
            done = os.pwritev(self._fd, batch, offset)
            for row in batch:  # after a short vector write, the rest row by row
                if done >= len(row):
                    done -= len(row)
                else:
                    self._pwrite_all(row[done:], offset + done)
                    done = 0
                offset += len(row)
            self._behind(offset)

    def _behind(self, end: int) -> None:
        """Write-behind up to `end`: hand full windows to writeback, drop the one before from the cache."""
        while self._sync_range is not None and end - self._kicked >= WRITE_WINDOW:
            start = self._kicked
            self._kicked += WRITE_WINDOW
            error = self._sync_range(self._fd, start, WRITE_WINDOW, _SYNC_WRITE)
            if not error and start >= WRITE_WINDOW:
                previous = start - WRITE_WINDOW
                error = self._sync_range(self._fd, previous, WRITE_WINDOW,
                                         _SYNC_WAIT_BEFORE | _SYNC_WRITE | _SYNC_WAIT_AFTER)
                if not error:
                    os.posix_fadvise(self._fd, previous, WRITE_WINDOW, os.POSIX_FADV_DONTNEED)
            if error in (errno.EINVAL, errno.ENOSYS, errno.ESPIPE, errno.EOPNOTSUPP):
                self._sync_range = None  # this file system or kernel does not do it: plain writes
            elif error:
                raise OSError(error, os.strerror(error))

    def _retire_oldest(self) -> None:
        hashed, written, buffer, length = self._pending.popleft()
        try:
            hashed.result()
            written.result()
        finally:
            self._in_flight -= length
            if buffer is not None:
                self._free.append(buffer)

    def _submit(self, views: list[memoryview], buffer: bytearray | None) -> None:
        length = sum(len(view) for view in views)

        def hash_views() -> None:
            for view in views:
                self.digest.update(view)

        self._pending.append((self._hasher.submit(hash_views), self._writer.submit(self._write_at, views, self._offset),
                              buffer, length))
        self._offset += length
        self._in_flight += length
        while self._in_flight > self._limit and len(self._pending) > 1:
            self._retire_oldest()

    def _submit_staged(self) -> None:
        if self._current is not None and self._fill:
            self._submit([memoryview(self._current)[:self._fill]], self._current)
            self._current, self._fill = None, 0

    def write_rows(self, rows: list[memoryview]) -> None:
        """Append `rows` one after the other without gathering them first (pwritev): the rows of one rank's
        columns of a block, which the caller will not change (as with `owned`)."""
        self._submit_staged()
        self.size += sum(len(row) for row in rows)
        self._submit(rows, None)

    def write(self, data: bytes | memoryview, *, owned: bool = False) -> None:
        """Append `data`. With `owned`, the caller will not change those bytes (the writer keeps a reference
        until they are hashed and written), so a large piece is handed over without a copy."""
        view = memoryview(data).cast("B")
        if owned and len(view) >= OWNED_MIN:
            self._submit_staged()
            self.size += len(view)
            self._submit([view], None)
            return
        while len(view):
            if self._current is None:
                while not self._free:
                    self._retire_oldest()
                self._current = self._free.pop()
            take = min(len(view), WRITE_BUFFER - self._fill)
            self._current[self._fill:self._fill + take] = view[:take]
            self._fill += take
            self.size += take
            view = view[take:]
            if self._fill == WRITE_BUFFER:
                self._submit_staged()

    def close(self, *, sync: bool = False) -> None:
        if self._fd < 0:
            return
        try:
            self._submit_staged()
            while self._pending:
                self._retire_oldest()
            if sync:
                os.fdatasync(self._fd)
                if self._sync_range is not None:  # written and clean: keep none of it in the page cache
                    os.posix_fadvise(self._fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            for executor in (self._hasher, self._writer):
                executor.shutdown(wait=True, cancel_futures=True)
            self._pending.clear()
            os.close(self._fd)
            self._fd = -1


_SYNC_FILE_RANGE = _load_sync_file_range()
