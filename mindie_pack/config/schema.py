"""JSON Schema validation of config.json per layout (types, ranges, enums, patterns), with MindIE-style JSON paths
and, where MindIE's source defines it, the daemon's own wording (param_checker.h:80-85, param_checker.cpp:282-301).

Which fields are compulsory is not in the schemas: it depends on the release (config/compulsory.py).
"""

from __future__ import annotations

import json
import re
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from mindie_pack.config.compulsory import NATIVE_SECTION
from mindie_pack.config.problems import Problem, json_path
from mindie_pack.resources import schema_path


@cache
def load_schema(layout: str) -> dict[str, Any]:
    return json.loads(schema_path(f"mindie-config-{layout}.schema.json").read_text())


def _type_name(value: Any) -> str:
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string", list: "an array",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


_JSON_TYPE_NAME = {bool: "boolean", int: "number", float: "number", str: "string", list: "array", dict: "object",
                   type(None): "null"}  # nlohmann::json type_name()


def _native(error: ValidationError) -> str:
    """The daemon's line for a type or range error (param_checker.cpp:291-301, param_checker.h:80-85)."""
    path = [p for p in error.absolute_path if isinstance(p, str)]
    if not path:
        return ""
    key = path[-1]
    if error.validator == "type":
        declared = re.search(r"declared (\w+)", error.schema.get("$comment", ""))
        ctype = declared.group(1) if declared else {"boolean": "bool"}.get(str(error.validator_value),
                                                                           str(error.validator_value))
        return f"The type of param {key} should be {ctype}, but got {_JSON_TYPE_NAME.get(type(error.instance), '?')}"
    if error.validator in ("minimum", "maximum") and len(path) >= 2:
        name = f"{NATIVE_SECTION.get(path[-2], path[-2])}.{key}"
        if error.validator == "maximum":
            return f"{name} [{error.instance}] is out of bound [{error.validator_value}]"
        return f"{name} [{error.instance}] is less than [{error.validator_value}]"
    return ""


def _message(error: ValidationError) -> tuple[list[str | int], str]:
    path = list(error.absolute_path)
    kind = error.validator
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


# nlohmann's is_number_integer() is false for 1025.0, which JSON Schema would count as an integer
_TYPES = Draft202012Validator.TYPE_CHECKER.redefine(
    "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool))
_Validator = validators.extend(Draft202012Validator, type_checker=_TYPES)


def schema_problems(data: Any, layout: str) -> list[Problem]:
    validator = _Validator(load_schema(layout))
    problems = []
    for error in sorted(validator.iter_errors(data), key=lambda e: list(map(str, e.absolute_path))):
        path, message = _message(error)
        problems.append(Problem(json_path(path), message, native=_native(error),
                                source=error.schema.get("$comment", "") if isinstance(error.schema, dict) else ""))
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
