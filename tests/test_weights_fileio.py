"""The converter's file I/O against plain reads and the hash libraries: write-behind writer, mapped reads, and
the input hash fed by out-of-order reads."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import xxhash

from mindie_pack.weights import fileio, libc
from mindie_pack.weights.fileio import (
    OWNED_MIN,
    WRITE_BUFFER,
    WRITE_WINDOW,
    SequentialHash,
    StreamWriter,
    TrailingJobs,
    map_range,
)

RNG = np.random.default_rng(13)


def _bytes(n: int) -> bytes:
    return RNG.integers(0, 256, n, dtype=np.uint8).tobytes()


@pytest.mark.parametrize("write_behind", [True, False], ids=["sync_file_range", "plain-writes"])
def test_stream_writer_keeps_order_content_and_hash_across_windows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                   write_behind: bool) -> None:
    if write_behind:
        assert fileio._SYNC_FILE_RANGE is not None  # Linux: the write-behind path is the one under test
    else:  # where libc has no sync_file_range
        monkeypatch.setattr(fileio, "_SYNC_FILE_RANGE", None)
    sizes = [7, OWNED_MIN - 1, WRITE_BUFFER + 3, OWNED_MIN, 1, 3 * WRITE_BUFFER, 11, WRITE_WINDOW + 5, 2,
             WRITE_WINDOW * 2 + 17, 5]
    pieces = [_bytes(n) for n in sizes]
    path = tmp_path / "out.bin"
    writer = StreamWriter(path, buffers=2)
    for index, piece in enumerate(pieces):
        writer.write(piece, owned=index % 2 == 1)
    writer.close(sync=True)
    expected = b"".join(pieces)
    assert path.read_bytes() == expected
    assert writer.size == len(expected)
    assert writer.digest.hexdigest() == xxhash.xxh3_128_hexdigest(expected)
    assert (path.stat().st_mode & 0o777) == 0o640


def test_stream_writer_copies_what_it_does_not_own(tmp_path: Path) -> None:
    """A caller may refill its buffer as soon as write() returns when it did not pass owned=True."""
    buffer = bytearray(_bytes(2 * WRITE_BUFFER + 100))
    original = bytes(buffer)
    writer = StreamWriter(tmp_path / "out.bin")
    writer.write(memoryview(buffer))
    buffer[:] = bytes(len(buffer))  # reused at once
    writer.write(b"tail")
    writer.close(sync=True)
    assert (tmp_path / "out.bin").read_bytes() == original + b"tail"


def test_map_range_gives_the_bytes_at_any_offset(tmp_path: Path) -> None:
    data = _bytes(3 * 65536 + 123)
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        for offset, length in [(0, len(data)), (1, 10), (65535, 65538), (len(data) - 5, 5), (4097, 0)]:
            assert bytes(map_range(fd, offset, length)) == data[offset:offset + length]
    finally:
        os.close(fd)


def test_sequential_hash_of_reads_with_gaps_and_overlaps(tmp_path: Path) -> None:
    data = _bytes(1_000_003)
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        hasher = SequentialHash(fd, step=4096)
        # a header skipped, blocks read in order, one read again, one region never read, the tail never read
        jobs = [hasher.job_for(offset, length)
                for offset, length in [(100, 5000), (5100, 300_000), (200_000, 50_000), (400_000, 100_000)]]
        assert jobs[2] is None  # booked already
        for job in jobs:  # run later, after all were booked, as on the hash thread
            if job is not None:
                job()
        assert hasher.hexdigest() == hashlib.sha256(data).hexdigest()
    finally:
        os.close(fd)


def test_sequential_hash_of_views_the_caller_mapped(tmp_path: Path) -> None:
    """verify hands the hash the views it compared: gaps between them (record headers) are mapped by the hash,
    a view overlapping bytes booked already is hashed from where the booking ended, the tail at the end."""
    data = _bytes(700_001)
    path = tmp_path / "in.bin"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    try:
        hasher = SequentialHash(fd, "xxh3_128", step=4096)
        ranges = [(0, 10), (37, 200_000), (150_000, 100_000), (250_000, 1), (260_000, 300_000)]
        jobs = [hasher.job_for(offset, length, map_range(fd, offset, length)) for offset, length in ranges]
        for job in jobs:
            if job is not None:
                job()
        assert hasher.hexdigest() == xxhash.xxh3_128_hexdigest(data)
        with pytest.raises(ValueError, match="view of 3 bytes"):
            SequentialHash(fd, step=4096).job_for(0, 4, memoryview(b"abc"))
    finally:
        os.close(fd)


def test_trailing_jobs_run_in_order_at_most_lag_behind() -> None:
    import time
    from concurrent.futures import ThreadPoolExecutor

    done: list[int] = []

    def job(i: int) -> Callable[[], None]:
        def run() -> None:
            time.sleep(0.02)  # slower than the caller: without the bound the caller would run far ahead
            done.append(i)
        return run

    with ThreadPoolExecutor(max_workers=1) as executor:
        jobs = TrailingJobs(executor, lag=2)
        for i in range(8):
            jobs.submit(job(i))
            jobs.submit(None)  # nothing booked: nothing to run, and it does not count
            assert done[:max(0, i - 1)] == list(range(max(0, i - 1)))  # at most 2 jobs still pending
        jobs.drain()
        assert done == list(range(8))

        import threading

        gate = threading.Event()
        jobs.submit(lambda: (gate.wait(30), done.append(8)))
        jobs.submit(job(9))  # two jobs pending: the caller is not held back, the jobs run on the other thread
        assert done == list(range(8))
        gate.set()
        jobs.drain()
        assert done == list(range(10))

        def fail() -> None:
            raise OSError("disk gone")

        jobs.submit(fail)
        with pytest.raises(OSError, match="disk gone"):
            jobs.drain()
    inline: list[int] = []
    TrailingJobs(None, lag=2).submit(lambda: inline.append(1))
    assert inline == [1]


def test_libc_functions_are_found_or_none() -> None:
    import ctypes

    memcmp = libc.function("memcmp", ctypes.c_int, [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_size_t])
    assert memcmp is not None
    assert memcmp(b"abcd", b"abcd", 4) == 0 and memcmp(b"abcd", b"abce", 4) < 0 and memcmp(b"b", b"a", 1) > 0
    assert libc.function("mindie_pack_no_such_function", ctypes.c_int, []) is None


@pytest.mark.parametrize("with_libc", [True, False], ids=["memcmp", "numpy"])
def test_verify_byte_comparison_equals_python_equality(monkeypatch: pytest.MonkeyPatch, with_libc: bool) -> None:
    from mindie_pack.builder import verify

    if not with_libc:
        monkeypatch.setattr(verify, "_MEMCMP", None)
    else:
        assert verify._MEMCMP is not None
    for size in (0, 1, 7, 8, 9, 4099):
        data = _bytes(size)
        assert verify._same_bytes(memoryview(data), memoryview(bytes(data)))
        for position in {0, size // 2, size - 1} if size else set():
            other = bytearray(data)
            other[position] ^= 0x40
            assert not verify._same_bytes(memoryview(data), memoryview(bytes(other))), (size, position)
    assert not verify._same_bytes(memoryview(b"abc"), memoryview(b"ab"))
