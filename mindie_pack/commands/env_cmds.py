"""CLI commands of the env stage (not implemented yet)."""

import typer


def register(app: typer.Typer) -> None:
    """Nothing to register until the env stage lands."""
