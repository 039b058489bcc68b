"""Writing files safely, for every stage: atomic replacement with a fixed mode, and one clear line on OSError.

A neutral module (no stage imports), so the builder, config, deploy, env and emulator share one implementation.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mindie_pack.errors import PackError

_REASONS = {
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted (immutable, or not ours?)",
    errno.ENOTDIR: "a parent of it is a file, not a directory",
    errno.EISDIR: "it is a directory where a file is expected",
    errno.EEXIST: "it already exists",
    errno.ENAMETOOLONG: "the name is too long",
    errno.ELOOP: "too many levels of symbolic links",
}


def describe_os_error(exc: OSError) -> str:
    """The cause of an OSError in a few words (no path, no errno number soup)."""
    if exc.errno in _REASONS:
        return _REASONS[exc.errno]
    return exc.strerror or str(exc)


def output_error(path: Path | str, exc: OSError, what: str = "cannot write") -> PackError:
    """One line naming the output path and why it cannot be written."""
    culprit = exc.filename if isinstance(exc.filename, str) and exc.filename not in ("", str(path)) else None
    where = f" ({culprit})" if culprit else ""
    return PackError(f"{path}: {what}: {describe_os_error(exc)}{where}")


@contextmanager
def writing(path: Path | str, what: str = "cannot write") -> Iterator[None]:
    """`with writing(path): ...` turns any OSError raised inside into one line naming `path`."""
    try:
        yield
    except PackError:
        raise
    except OSError as exc:
        raise output_error(path, exc, what) from exc


def check_parent_writable(path: Path) -> None:
    """Refuse an output path before work starts: an existing directory where a file goes, a parent that is a file,
    or a parent folder we may not write."""
    if path.is_dir():
        raise output_error(path, OSError(errno.EISDIR, os.strerror(errno.EISDIR)))
    parent = path.parent
    for ancestor in (parent, *parent.parents):
        if ancestor.exists():
            if not ancestor.is_dir():
                raise output_error(path, OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(ancestor)))
            if os.statvfs(ancestor).f_flag & os.ST_RDONLY:
                raise output_error(path, OSError(errno.EROFS, os.strerror(errno.EROFS), str(ancestor)))
            if not os.access(ancestor, os.W_OK | os.X_OK):
                raise output_error(path, OSError(errno.EACCES, os.strerror(errno.EACCES), str(ancestor)))
            break


def make_dirs(path: Path, mode: int = 0o750) -> Path:
    """mkdir -p with `mode` on every folder created (umask does not widen it); OSError -> one line."""
    with writing(path, "cannot create the folder"):
        missing = []
        probe = path
        while not probe.exists():
            missing.append(probe)
            if probe.parent == probe:
                break
            probe = probe.parent
        for folder in reversed(missing):
            folder.mkdir(mode=mode, exist_ok=True)
            os.chmod(folder, mode)
        if not path.is_dir():
            raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR))
    return path


def atomic_write_bytes(path: Path, data: bytes, mode: int = 0o640) -> None:
    """Write `data` to a temporary file beside `path`, fsync, chmod, then rename over `path`.

    Readers see the old file or the new one, never half of one; a failure leaves no temporary file behind.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str, mode: int = 0o640) -> None:
    atomic_write_bytes(path, text.encode(), mode)
