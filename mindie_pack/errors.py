"""The one error type a user sees: a single line naming the file, field or tensor and what was expected."""


class PackError(Exception):
    """A user-facing failure. The CLI prints `error: <message>` on one line and exits with `exit_code`."""

    exit_code: int = 2

    def __init__(self, message: str, *, exit_code: int | None = None) -> None:
        super().__init__(" ".join(message.split()))
        if exit_code is not None:
            self.exit_code = exit_code


class VerificationFailed(PackError):
    """The artifact exists but does not match what it claims (hash, shape, value); exit code 1."""

    exit_code = 1
