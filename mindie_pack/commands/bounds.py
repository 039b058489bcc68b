"""Option bounds the type system cannot say: strictly positive numbers.

Used as typer callbacks, so a bad value is a usage error (exit 2, one line naming the flag) like `min=`/`max=`.
"""

from __future__ import annotations

import typer


def positive(value: float | None) -> float | None:
    """None (not given) or a number > 0."""
    if value is not None and not value > 0:  # also refuses nan
        raise typer.BadParameter(f"{value:g} is not allowed: expected a number greater than 0")
    return value
