"""Ending a process that imported torch or MindSpore without the interpreter's teardown.

Finalizing the modules of torch costs ~0.9 CPU-s and of MindSpore ~0.6 CPU-s on our 2-core CI machines (measured:
`import torch` then a normal exit, against the same with `os._exit`), after the command's work is done and its
output printed: a third of `verify --reference`'s margin on a 1.88 GB model, paid once by the verifier and once by
its MindSpore child, which the verifier waits for. Nothing of ours needs that teardown: the exit handlers
(`atexit`: temporary directories of `weakref.finalize`, logging, thread pools) are run, Python's and C's standard
streams are flushed, and when a non-daemon thread is still running the normal exit (which waits for it) is kept.
"""

from __future__ import annotations

import atexit
import os
import sys
import threading

HEAVY_MODULES = ("torch", "mindspore")


def _other_threads_running() -> bool:
    main = threading.main_thread()
    return any(t is not main and not t.daemon and t.is_alive() for t in threading.enumerate())


def leave(code: int) -> None:
    """Exit with `code` at once when a heavy library is loaded (after running the exit handlers and flushing
    stdout/stderr); otherwise return, and the caller exits normally."""
    if not any(name in sys.modules for name in HEAVY_MODULES) or _other_threads_running():
        return
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        try:
            if stream is not None:
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more can reach it
            pass
    _flush_c_streams()
    os._exit(code)


def _flush_c_streams() -> None:
    """What native code (torch, MindSpore) printed through C stdio: os._exit skips libc's exit, which flushes."""
    import ctypes

    from mindie_pack.weights import libc

    fflush = libc.function("fflush", ctypes.c_int, [ctypes.c_void_p])
    if fflush is not None:
        fflush(None)
