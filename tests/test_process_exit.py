"""Ending a process that loaded torch without the interpreter's teardown (mindie_pack/process_exit.py): what a
caller of the process sees must not change — exit code, every byte of output through a pipe, exit handlers, and
a running non-daemon thread is still waited for."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path


def _run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(tmp_path)], capture_output=True,
                          timeout=300)


def test_exit_code_output_and_exit_handlers_survive(tmp_path: Path) -> None:
    proc = _run("""
        import atexit, pathlib, sys
        import torch  # a heavy library really loaded
        from mindie_pack.process_exit import leave
        out = pathlib.Path(sys.argv[1])
        atexit.register(lambda: (out / "atexit").write_text("ran"))
        sys.stdout.write("x" * 3_000_000)  # more than a pipe holds: buffered, and must all arrive
        sys.stderr.write("last words")
        leave(3)
        print("not reached")
    """, tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == b"x" * 3_000_000
    assert proc.stderr.endswith(b"last words")
    assert (tmp_path / "atexit").read_text() == "ran"


def test_a_running_thread_keeps_the_normal_exit(tmp_path: Path) -> None:
    proc = _run("""
        import pathlib, sys, threading, time
        import torch
        from mindie_pack.process_exit import leave
        out = pathlib.Path(sys.argv[1])
        worker = threading.Thread(target=lambda: (time.sleep(0.5), (out / "thread").write_text("done")))
        worker.start()
        leave(0)
        print("returned")
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == b"returned"
    assert (tmp_path / "thread").read_text() == "done"


def test_without_heavy_libraries_it_returns(tmp_path: Path) -> None:
    proc = _run("""
        from mindie_pack.process_exit import leave
        leave(4)
        print("returned")
    """, tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == b"returned"
