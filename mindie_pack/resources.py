"""Locate the data folders (templates/, schemas/) in a wheel install or a source checkout."""

from __future__ import annotations

from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """`templates` or `schemas`: inside the package when installed from a wheel, else at the repository top."""
    for candidate in (_PACKAGE_DIR / name, _PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"mindie-pack data folder {name!r} is missing from the installation")


def template_dir() -> Path:
    return data_dir("templates")


def schema_path(file_name: str) -> Path:
    return data_dir("schemas") / file_name
