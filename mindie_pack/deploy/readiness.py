"""The one readiness loop, for the host daemon and the container alike.

Ready means, in order: the daemon logged its success line, management /health answers 200, /v1/models lists the
model, and a one-token /generate request answers. A fatal log line, an exited daemon or the deadline ends the wait
with the step that failed, the likely cause and the log's last lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mindie_pack.deploy.hints import hints_for
from mindie_pack.deploy.logs import LogFollower, tail
from mindie_pack.deploy.probe import Endpoints
from mindie_pack.errors import PackError

SUCCESS_LINE = "Daemon start success!"
FATAL_LINES = ("Failed to init endpoint", "Failed to init engine", "[Start mindie server] [fail]")
POLL_S = 0.25


@dataclass
class Progress:
    """Callbacks for the CLI's progress display; all optional."""

    stage: Callable[[str], None] = lambda text: None
    log_line: Callable[[str], None] = lambda line: None


class Running(Protocol):
    """What the loop needs from a launcher: whether the daemon has exited (its exit code) or not (None)."""

    def exit_code(self) -> int | None: ...


def wait_ready(running: Running, endpoints: Endpoints, log_path: Path, *, timeout_s: float,
               log_stream_after_s: float = 30.0, progress: Progress | None = None, serves: bool = True) -> None:
    """`serves=False` (a multi-node worker, which has no inference API): ready at the success line."""
    import httpx

    from mindie_pack.deploy.probe import serving

    progress = progress or Progress()
    log = LogFollower(log_path)
    started = time.monotonic()
    deadline = started + timeout_s
    unshown: list[str] = []
    success_seen = False
    last_step = f"waiting for '{SUCCESS_LINE}' in the log"
    with httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0), trust_env=False) as client:
        while True:
            lines = log.new_lines()
            unshown += lines
            if time.monotonic() - started > log_stream_after_s:
                for line in unshown:
                    progress.log_line(line)
                unshown = []
            code = running.exit_code()
            if code is not None:
                lines += log.new_lines()  # what it wrote last
                raise failure(f"the daemon exited with code {code}", log_path)
            fatal = next((line for line in lines if any(f in line for f in FATAL_LINES)), None)
            if fatal is not None:
                raise failure(f"the daemon reported: {fatal.strip()}", log_path)
            success_seen = success_seen or any(SUCCESS_LINE in line for line in lines)
            if success_seen and not serves:
                return
            if success_seen:
                progress.stage("probing /health, /v1/models and a one-token request")
                ok, why = serving(client, endpoints)
                if ok:
                    return
                last_step = why
                progress.stage(f"waiting: {why}")
            else:
                elapsed = int(time.monotonic() - started)
                progress.stage(f"waiting for '{SUCCESS_LINE}' ({elapsed} s of {int(timeout_s)} s)")
            if time.monotonic() > deadline:
                raise failure(f"the service was not ready after {timeout_s:g} s (last step: {last_step})", log_path)
            time.sleep(POLL_S)


def failure(what: str, log_path: Path) -> PackError:
    """One line saying what failed, then the likely causes and the log's last lines, each on its own line."""
    lines = tail(log_path, 30)
    details = [f"  likely cause: {hint}" for hint in hints_for(lines)]
    if lines:
        details += ["  last log lines:", *(f"    {line}" for line in lines[-15:])]
    return PackError(f"deploy failed: {what}; log {log_path}", details=details)
