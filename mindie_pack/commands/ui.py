"""Rich consoles made on first use, and rich's markup escape imported when called.

Why: importing rich.console costs ~40 ms on our CI machines, a sixth of the 0.25 s budget of `mindie-pack
--help` (issue 13); a command that prints imports it when it prints, `--help` never does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console


class LazyConsole:
    """Stands for `rich.console.Console(**options)`, created at the first attribute access. Pass `.get()` where
    rich wants the Console itself (Progress, Status)."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def get(self) -> Console:
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


def escape(markup: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(markup)
