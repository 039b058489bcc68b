"""The one error type a user sees: a clear message naming the file, field or tensor and what was expected.

The message is one line, or a first line followed by indented detail lines (a daemon's last log lines, likely
causes): those are kept whole, never folded into one long line.
"""


def _tidy(message: str) -> str:
    lines = [line.rstrip() for line in message.strip().splitlines()]
    return "\n".join(line for line in lines if line.strip())


class PackError(Exception):
    """A user-facing failure. The CLI prints `error: <message>` and exits with `exit_code`."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(_tidy(message))
        if exit_code is not None:
            self.exit_code = exit_code


class VerificationFailed(PackError):
    """The artifact exists but does not match what it claims (hash, shape, value); exit code 1."""

    exit_code = 1
