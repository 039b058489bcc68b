"""CLI commands of the emulator stage (not implemented yet)."""

import typer


def register(app: typer.Typer) -> None:
    """Nothing to register until the emulator stage lands."""
