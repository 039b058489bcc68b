"""MindIE version lines: which config layout (schema and template) a MindIE release uses."""

from __future__ import annotations

import re
from typing import Any

from mindie_pack.errors import PackError

LINES = ("1.0", "2.x")
DEFAULT_MINDIE_VERSION = "2.0.RC1"
_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(?:RC\d+|\d+|T\d+(?:\.\d+)?))?(?:\.B\d+)?$")


def parse_version(version: str) -> tuple[int, int]:
    match = _VERSION.match(version.strip())
    if not match:
        raise PackError(f"MindIE version {version!r}: expected e.g. 1.0.RC3, 1.0.0, 2.0.RC1, 2.3.0")
    return int(match.group(1)), int(match.group(2))


def line_for(version: str) -> str:
    """The config layout of a MindIE release, or its line name passed as is."""
    if version in LINES:
        return version
    major, minor = parse_version(version)
    if major == 1 and minor == 0:
        return "1.0"
    if major == 2 and minor <= 3:
        return "2.x"
    raise PackError(f"MindIE version {version!r} is not supported (supported: 1.0.RC3 - 1.0.0 and 2.0 - 2.3; 3.0 "
                    "moved the config to mindie_llm/conf and dropped the ms backend)")


def has_dynamic_timeout_section(version: str) -> bool:
    """EnableDynamicAdjustTimeoutConfig is part of the config from 2.3 on."""
    if version in LINES:
        return False
    return parse_version(version) >= (2, 3)


_V2_MARKERS = (("EnableDynamicAdjustTimeoutConfig",), ("ServerConfig", "tokenTimeout"), ("ServerConfig", "e2eTimeout"),
               ("ServerConfig", "tlsCrlPath"), ("LogConfig", "dynamicLogLevel"), ("BackendConfig", "kvPoolConfig"))
_V1_MARKERS = (("LogConfig", "logLevel"), ("LogConfig", "logPath"), ("ServerConfig", "tlsCrl"))


def _has(data: Any, keys: tuple[str, ...]) -> bool:
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return False
        data = data[key]
    return True


def detect_version(data: dict[str, Any]) -> str:
    """"1.0" or "2.x" from the file's shape (2.x markers win; a file with neither is read as 2.x)."""
    if any(_has(data, m) for m in _V2_MARKERS):
        return "2.x"
    if any(_has(data, m) for m in _V1_MARKERS):
        return "1.0"
    return "2.x"
