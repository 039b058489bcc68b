"""Who the daemon is, and signalling only that.

At start we record the daemon's pid, process group, start time, executable and command line, and put a random
per-deployment token in its environment (its children inherit it). `stop` signals a process only when it carries
that token and was created no earlier than the daemon: a stale or hostile state file (a recycled pid, pgid 1,
our own group) can never make us signal a process we did not start.
"""

from __future__ import annotations

import os
import secrets
import signal
import time
from dataclasses import dataclass

import psutil

TOKEN_ENV = "MINDIE_PACK_DEPLOYMENT"
START_TIME_SLACK_S = 0.05  # psutil's create_time is derived from jiffies since boot: allow rounding


def new_token() -> str:
    return secrets.token_hex(16)


def process_alive(pid: int | None) -> bool:
    """True when `pid` runs and is not a zombie."""
    if not pid or pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


@dataclass(frozen=True)
class Identity:
    pid: int
    pgid: int
    create_time: float
    exe: str | None
    cmdline: list[str]


def identify(pid: int) -> Identity | None:
    """The identity of a running process, or None when there is none (or it is a zombie)."""
    try:
        proc = psutil.Process(pid)
        with proc.oneshot():
            if proc.status() == psutil.STATUS_ZOMBIE:
                return None
            try:
                exe = proc.exe() or None
            except (psutil.AccessDenied, psutil.ZombieProcess):
                exe = None
            try:
                cmdline = proc.cmdline()
            except (psutil.AccessDenied, psutil.ZombieProcess):
                cmdline = []
            return Identity(pid, os.getpgid(pid), proc.create_time(), exe, cmdline)
    except (psutil.NoSuchProcess, ProcessLookupError):
        return None


def _carries_token(proc: psutil.Process, token: str) -> bool:
    try:
        return proc.environ().get(TOKEN_ENV) == token
    except (psutil.AccessDenied, psutil.NoSuchProcess, psutil.ZombieProcess):
        return False


@dataclass
class Target:
    """What `stop` may signal, and what it found out on the way (said to the user)."""

    pids: list[int]
    findings: list[str]


def unsafe_group(pgid: int | None) -> str | None:
    """Why a recorded process group must never be signalled, or None."""
    if pgid is None:
        return None
    if pgid <= 1:
        return f"process group {pgid} would signal every process (kill(-{pgid}))" if pgid == 1 else \
            f"process group {pgid} is not a process group"
    if pgid == os.getpgrp():
        return f"process group {pgid} is mindie-pack's own"
    return None


def find_daemon(pid: int | None, pgid: int | None, create_time: float | None, token: str | None) -> Target:
    """The recorded daemon and its children, each checked against the recorded identity."""
    findings: list[str] = []
    if not pid or pid <= 1 or pid == os.getpid():
        findings.append(f"recorded pid {pid} is not a daemon we started: not signalled")
        return Target([], findings)
    if create_time is None or not token:
        findings.append(f"the state file records no identity for pid {pid} (written by an older mindie-pack?): "
                        "nothing signalled; stop the daemon by hand if it still runs")
        return Target([], findings)
    leader = identify(pid)
    if leader is None:
        findings.append(f"the daemon (pid {pid}) is no longer running")
    elif abs(leader.create_time - create_time) > START_TIME_SLACK_S:
        findings.append(f"pid {pid} is now another process ({' '.join(leader.cmdline)[:80] or leader.exe}, started "
                        f"{time.strftime('%H:%M:%S', time.localtime(leader.create_time))}, not at "
                        f"{time.strftime('%H:%M:%S', time.localtime(create_time))}): not signalled")
    pids: list[int] = []
    for proc in psutil.process_iter(["pid", "create_time"]):
        info = proc.info
        if info["pid"] in (os.getpid(), 1) or info["create_time"] is None:
            continue
        if info["create_time"] + START_TIME_SLACK_S < create_time:
            continue  # older than our daemon: cannot be one of its processes
        if _carries_token(proc, token):
            pids.append(info["pid"])
    if leader is not None and abs(leader.create_time - create_time) <= START_TIME_SLACK_S and pid not in pids:
        findings.append(f"pid {pid} ({' '.join(leader.cmdline)[:80] or leader.exe}) does not carry this "
                        "deployment's token: not signalled")
    if pgid is not None:
        others = [p for p in pids if _pgid(p) != pgid]
        if others:
            findings.append(f"{len(others)} process(es) of the deployment left its process group {pgid}")
    return Target(sorted(pids), findings)


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


def signal_all(pids: list[int], sig: int) -> None:
    for pid in pids:
        if pid <= 1 or pid == os.getpid():
            continue  # never: see unsafe_group
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def wait_gone(pids: list[int], timeout_s: float) -> list[int]:
    """Wait until every pid has exited (zombies count as exited); return those still running."""
    deadline = time.monotonic() + max(timeout_s, 0.0)
    remaining = [p for p in pids if process_alive(p)]
    while remaining and time.monotonic() < deadline:
        time.sleep(0.1)
        remaining = [p for p in remaining if process_alive(p)]
    return remaining


def terminate(pids: list[int], grace_s: float) -> list[int]:
    """SIGTERM to every process, the same grace period for all of them, then SIGKILL to what is left.

    Returns the pids that needed SIGKILL.
    """
    signal_all(pids, signal.SIGTERM)
    left = wait_gone(pids, grace_s)
    if left:
        signal_all(left, signal.SIGKILL)
        wait_gone(left, 5.0)
    return left
