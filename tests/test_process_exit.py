"""Ending a process that loaded torch without the interpreter's teardown (mindie_pack/process_exit.py): what a
caller of the process sees must not change — exit code, every byte of output through a pipe, exit handlers, and
a running non-daemon thread is still waited for."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path


def _run(script: str, tmp_path: Path) -> subprocess.CompletedProcess[bytes]:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # buffered, as a user's shell has it
    return subprocess.run([sys.executable, "-c", textwrap.dedent(script), str(tmp_path)], capture_output=True,
                          timeout=300, env=env)


def test_exit_code_output_and_exit_handlers_survive(tmp_path: Path) -> None:
    proc = _run("""
        import atexit, pathlib, sys
        import torch  # a heavy library really loaded
        from mindie_pack.process_exit import leave
        out = pathlib.Path(sys.argv[1])
        atexit.register(lambda: (out / "atexit").write_text("ran"))
        sys.stdout.write("x" * 3_000_000)  # more than a pipe holds
        sys.stdout.write("END")  # a short tail, still in Python's buffer
        sys.stderr.write("last words")
        import ctypes
        libc = ctypes.CDLL(None)
        libc.printf(b"%s", b"C tail")  # native code's output, in C stdio's buffer (a pipe: fully buffered)
        leave(3)
        print("not reached")
    """, tmp_path)
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == b"x" * 3_000_000 + b"END" + b"C tail"  # Python's streams are flushed first, then C's
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


def test_the_cli_entry_keeps_its_exit_codes(tmp_path: Path) -> None:
    """`mindie-pack` as a process (main() without argv) with torch loaded: a command's exit code, None and a
    message code as sys.exit has them; the fast exit is taken (code after main() does not run) except for a
    message, which Python prints on the normal way out."""
    outcomes = {"return": (0, False), "None": (0, False), "2": (2, False), "'boom'": (1, True)}
    for raised, (code, normal_exit) in outcomes.items():
        proc = _run(f"""
            import sys
            import torch
            from mindie_pack import cli
            def command(argv):
                if {raised!r} != "return":
                    raise SystemExit({raised if raised != "return" else "None"})
            cli._main = command
            try:
                cli.main()
            finally:
                print("after main")
        """, tmp_path)
        assert proc.returncode == code, (raised, proc.stderr)
        assert (b"after main" in proc.stdout) is normal_exit, raised
        if raised == "'boom'":
            assert proc.stderr.strip().endswith(b"boom")
