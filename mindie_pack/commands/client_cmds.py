"""CLI commands of the client stage (not implemented yet)."""

import typer


def register(app: typer.Typer) -> None:
    """Nothing to register until the client stage lands."""
