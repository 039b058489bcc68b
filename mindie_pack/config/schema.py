"""JSON Schema validation of config.json per version line, with MindIE-style JSON paths in the messages."""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from mindie_pack.config.problems import Problem, json_path
from mindie_pack.resources import schema_path


@cache
def load_schema(line: str) -> dict[str, Any]:
    return json.loads(schema_path(f"mindie-config-{line}.schema.json").read_text())


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def _message(error: ValidationError) -> tuple[list[str | int], str]:
    path = list(error.absolute_path)
    kind = error.validator
    if kind == "required":
        missing = [k for k in error.validator_value if k not in (error.instance or {})]
        return path + [missing[0]], "missing compulsory field"
    if kind == "type":
        expected = error.validator_value
        expected = " or ".join(expected) if isinstance(expected, list) else expected
        return path, f"expected {expected}, got {_type_name(error.instance)} {json.dumps(error.instance)}"
    if kind in ("minimum", "maximum"):
        schema = error.schema
        low, high = schema.get("minimum"), schema.get("maximum")
        bounds = f"[{low}, {high}]" if low is not None and high is not None else (
            f">= {low}" if low is not None else f"<= {high}")
        return path, f"{error.instance} is out of range {bounds}"
    if kind == "enum":
        choices = ", ".join(json.dumps(v) for v in error.validator_value)
        return path, f"{json.dumps(error.instance)} is not one of {choices}"
    if kind == "pattern":
        return path, f"{json.dumps(error.instance)} does not match {error.validator_value}"
    if kind == "anyOf" and path and path[-1] == "npuMemSize":
        return path, f"{error.instance} is invalid: it should be within (0, 2147483647] GB or -1"
    if kind == "minItems":
        return path, f"needs at least {error.validator_value} element(s)"
    return path, error.message


def schema_problems(data: Any, line: str) -> list[Problem]:
    validator = Draft202012Validator(load_schema(line))
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path, message = _message(error)
        problems.append(Problem(json_path(path), message))
    return problems


def field_schema(line: str, dotted: str) -> dict[str, Any] | None:
    """The schema of a field named by its dotted path (array indexes optional), or by its bare name."""
    schema = load_schema(line)
    parts = [p for p in dotted.replace("[]", "").split(".") if p]
    node: dict[str, Any] | None = schema
    for part in parts:
        while node is not None and node.get("type") == "array" and "items" in node:
            node = node["items"]
        node = (node or {}).get("properties", {}).get(part)
        if node is None:
            break
    if node is not None:
        return node
    return _find_by_name(schema, parts[-1]) if len(parts) == 1 else None


def _find_by_name(node: dict[str, Any], name: str) -> dict[str, Any] | None:
    for key, child in node.get("properties", {}).items():
        if key == name:
            return child
        found = _find_by_name(child.get("items", child) if child.get("type") == "array" else child, name)
        if found is not None:
            return found
    return None
