"""CLI commands of the config stage (not implemented yet)."""

import typer


def register(app: typer.Typer) -> None:
    """Nothing to register until the config stage lands."""
