"""Keys the judging release does not read: a warning naming the key and the nearest known one (MindIE itself
ignores undeclared keys, so a misspelt `portt` silently leaves `port` at its default or missing)."""

from __future__ import annotations

import difflib
from typing import Any

from mindie_pack.config.problems import Problem, json_path
from mindie_pack.config.schema import load_schema

# ModelConfig entries may carry engine options MindIE passes on to the backend (e.g. async_scheduler_wait_time in
# the shipped conf/config.json): there only a near miss of a known key is reported.
PASS_THROUGH = ("ModelConfig",)


def _children(schemas: list[tuple[str, dict[str, Any]]], key: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for layout, schema in schemas:
        child = schema.get("properties", {}).get(key)
        if isinstance(child, dict):
            while child.get("type") == "array" and isinstance(child.get("items"), dict):
                child = child["items"]
            out.append((layout, child))
    return out


def unknown_key_problems(data: Any, layouts: list[str], release_name: str) -> list[Problem]:
    problems: list[Problem] = []
    others = [lay for lay in ("1.0", "2.x", "3.0") if lay not in layouts]

    def walk(node: Any, schemas: list[tuple[str, dict[str, Any]]], other: list[tuple[str, dict[str, Any]]],
             path: list[str | int], parent: str) -> None:
        if isinstance(node, list):
            for index, item in enumerate(node):
                walk(item, schemas, other, path + [index], parent)
            return
        if not isinstance(node, dict) or not schemas or not any("properties" in s for _, s in schemas):
            return
        known = sorted({k for _, s in schemas for k in s.get("properties", {})})
        for key, value in node.items():
            if key in known:
                walk(value, _children(schemas, key), _children(other, key), path + [key], key)
                continue
            close = difflib.get_close_matches(key, known, n=1, cutoff=0.8 if parent in PASS_THROUGH else 0.6)
            if parent in PASS_THROUGH and not close:
                continue
            elsewhere = [lay for lay, s in other if key in s.get("properties", {})]
            where = json_path(path + [key])
            if elsewhere:
                layouts_text = " and ".join(elsewhere)
                problems.append(Problem(where, f"is a key of the {layouts_text} layout{'s' * (len(elsewhere) > 1)}: "
                                        f"MindIE {release_name} does not read it", "warning"))
            else:
                hint = f"; did you mean {close[0]!r}?" if close else ""
                problems.append(Problem(where, f"unknown key: MindIE {release_name} does not read it{hint}",
                                        "warning"))

    walk(data, [(lay, load_schema(lay)) for lay in layouts], [(lay, load_schema(lay)) for lay in others], [], "")
    return problems
