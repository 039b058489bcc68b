"""MindIE version strings -> config layout (schema and template); the release table is config/releases.py."""

from __future__ import annotations

from typing import Any

from mindie_pack.config.detect import judge_shape
from mindie_pack.config.releases import LAYOUTS, line_for, parse_version, release_for

LINES = LAYOUTS
DEFAULT_MINDIE_VERSION = "2.0.RC1"

__all__ = ["DEFAULT_MINDIE_VERSION", "LINES", "detect_version", "has_dynamic_timeout_section", "line_for",
           "parse_version", "release_for"]


def has_dynamic_timeout_section(version: str) -> bool:
    """EnableDynamicAdjustTimeoutConfig is part of the shipped config from 2.3 on (src/server/conf/config.json)."""
    if version in LINES:
        return version == "3.0"
    return release_for(version).order >= release_for("2.3.0").order


def detect_version(data: dict[str, Any]) -> str:
    """The layout ("1.0", "2.x" or "3.0") the file's shape points at; the oldest when it leaves several open."""
    return judge_shape(data).releases[0].layout
