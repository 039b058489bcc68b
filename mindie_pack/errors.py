"""The one error type a user sees: a single line naming the file, field or tensor and what was expected.

A failure that has more to show (the daemon's last log lines, the likely causes) passes them as `details`: they are
printed whole, one per line, under the message; the message itself is always folded into one line.
"""

from __future__ import annotations

from collections.abc import Sequence


class PackError(Exception):
    """A user-facing failure. The CLI prints `error: <message>` (then any detail lines) and exits with
    `exit_code`."""

    exit_code: int = 2

    def __init__(self, message: str, *, details: Sequence[str] = (), exit_code: int | None = None) -> None:
        self.message = " ".join(message.split())
        self.details = [line.rstrip() for line in details if line.strip()]
        super().__init__("\n".join([self.message, *self.details]))
        if exit_code is not None:
            self.exit_code = exit_code


class VerificationFailed(PackError):
    """The artifact exists but does not match what it claims (hash, shape, value); exit code 1."""

    exit_code = 1
