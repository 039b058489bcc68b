"""CLI commands of the deploy stage (not implemented yet)."""

import typer


def register(app: typer.Typer) -> None:
    """Nothing to register until the deploy stage lands."""
