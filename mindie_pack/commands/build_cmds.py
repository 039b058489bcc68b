"""CLI commands of the build stage: init, build, verify (being written)."""

import typer


def register(app: typer.Typer) -> None:
    """Registered once the build stage lands."""
