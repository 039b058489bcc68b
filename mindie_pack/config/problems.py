"""A problem found in a MindIE config: where (JSON path or file), what, how bad, and how MindIE itself says it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class Problem:
    path: str  # JSON path such as "BackendConfig.ModelDeployConfig.ModelConfig[0].worldSize", or a file path
    message: str  # includes the fix where there is one
    severity: Severity = "error"
    native: str = ""  # the line the real daemon logs for it, where its source defines one
    source: str = ""  # the MindIE-LLM file:line or doc page the rule comes from

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    @property
    def log_line(self) -> str:
        """What a MindIE daemon would log: its own wording where known, else our line."""
        return self.native or str(self)

    def to_dict(self) -> dict[str, str]:
        out = {"path": self.path, "message": self.message, "severity": self.severity}
        if self.native:
            out["native"] = self.native
        if self.source:
            out["source"] = self.source
        return out


def json_path(parts: list[str | int] | tuple[str | int, ...]) -> str:
    out = ""
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(root)"


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def unique(problems: list[Problem]) -> list[Problem]:
    """One line per problem: the first of several with the same path and message (an error beats a warning)."""
    seen: dict[tuple[str, str], Problem] = {}
    for problem in problems:
        key = (problem.path, problem.message)
        if key not in seen or (problem.severity == "error" and seen[key].severity == "warning"):
            seen[key] = problem
    return list(seen.values())
