"""libc functions that Python's os module does not wrap (sync_file_range, memcmp), through ctypes.

`function` returns None where the C library or the function is missing (not Linux, a static Python): the
callers then take their portable path."""

from __future__ import annotations

import ctypes
import ctypes.util
from functools import cache
from typing import Any


@cache
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    except OSError:
        return None


def function(name: str, restype: Any, argtypes: list[Any]) -> Any | None:
    """libc's `name` with its C signature set (a fresh handle each call, so signatures never clash), or
    None. Calls release the GIL; after a failed call `ctypes.get_errno()` holds its errno."""
    libc = _libc()
    if libc is None:
        return None
    try:
        found = libc[name]  # a new function object: getattr would share one per name
    except AttributeError:
        return None
    found.restype, found.argtypes = restype, argtypes
    return found
