"""CLI commands of the runtime stage (not implemented yet)."""

import typer


def register(app: typer.Typer) -> None:
    """Nothing to register until the runtime stage lands."""
