"""The deployment spec `mindie-pack.yaml`: load, validate against schemas/spec.schema.json, resolve paths."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindie_pack.errors import PackError
from mindie_pack.resources import schema_path

DEFAULT_SPEC_NAME = "mindie-pack.yaml"


@dataclass
class Spec:
    """A validated spec. `raw` keeps every section; relative paths are resolved against the spec's folder."""

    path: Path
    raw: dict[str, Any] = field(default_factory=dict)

    def section(self, name: str) -> dict[str, Any]:
        return dict(self.raw.get(name) or {})

    def resolve(self, value: str | None) -> Path | None:
        if value is None:
            return None
        candidate = Path(value).expanduser()
        return candidate if candidate.is_absolute() else (self.path.parent / candidate).resolve()


def _schema() -> dict[str, Any]:
    import json

    return json.loads(schema_path("spec.schema.json").read_text())


def validate_spec_data(data: Any, origin: str) -> None:
    import jsonschema  # here, not at the top: the CLI imports this module for --help

    validator = jsonschema.Draft202012Validator(_schema())
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        first = errors[0]
        where = ".".join(str(p) for p in first.absolute_path) or "(top level)"
        raise PackError(f"{origin}: field {where}: {first.message}")


def load_spec(path: Path | None = None) -> Spec:
    spec_path = Path(path) if path else Path.cwd() / DEFAULT_SPEC_NAME
    if not spec_path.is_file():
        raise PackError(
            f"{spec_path}: no deployment spec found; pass --model (or run `mindie-pack init --model HF_DIR`)"
        )
    import yaml

    try:
        data = yaml.safe_load(spec_path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise PackError(f"{spec_path}: not valid YAML ({exc.__class__.__name__}: {exc})") from exc
    validate_spec_data(data, str(spec_path))
    return Spec(path=spec_path.resolve(), raw=data)


def write_spec(path: Path, data: dict[str, Any], *, force: bool = False) -> None:
    import yaml

    validate_spec_data(data, str(path))
    if path.exists() and not force:
        raise PackError(f"{path}: already exists; pass --force to overwrite it")
    path.write_text(yaml.safe_dump(data, sort_keys=False))
