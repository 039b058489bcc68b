"""The bind-address check: MindIE's CheckIp (src/utils/common_util.cpp:699-765 at 40fb0630, same at 8b4871ad),
applied to ipAddress and managementIpAddress after the container overrides (server_config.cpp:653-668)."""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

from mindie_pack.config.problems import Problem, Severity

SOURCE = "src/utils/common_util.cpp:699-765, src/config_manager/server_config.cpp:384-386,653-668 (40fb0630)"


def effective_addresses(server: dict[str, Any], environ: Mapping[str, str]) -> dict[str, tuple[Any, str]]:
    """key -> (address the daemon uses, where it came from): MIES_CONTAINER_IP replaces ipAddress,
    MIES_CONTAINER_MANAGEMENT_IP replaces managementIpAddress (which otherwise defaults to ipAddress)."""
    out: dict[str, tuple[Any, str]] = {}
    if environ.get("MIES_CONTAINER_IP"):
        out["ipAddress"] = (environ["MIES_CONTAINER_IP"], "MIES_CONTAINER_IP")
    elif "ipAddress" in server:
        out["ipAddress"] = (server["ipAddress"], "")
    if environ.get("MIES_CONTAINER_MANAGEMENT_IP"):
        out["managementIpAddress"] = (environ["MIES_CONTAINER_MANAGEMENT_IP"], "MIES_CONTAINER_MANAGEMENT_IP")
    elif "managementIpAddress" in server:
        out["managementIpAddress"] = (server["managementIpAddress"], "")
    elif "ipAddress" in out:
        out["managementIpAddress"] = out["ipAddress"]
    return out


def _literal_problem(address: str, allow_zero: bool) -> str:
    """Why CheckIp refuses `address`, or "" (':' -> IPv6, '.' -> IPv4, neither -> refused; inet_pton decides)."""
    if ":" in address:
        clean = address[1:-1] if address.startswith("[") and address.endswith("]") else address
        family, zero = socket.AF_INET6, clean == "::"
    elif "." in address:
        clean, family, zero = address, socket.AF_INET, address == "0.0.0.0"
    else:
        return "format is invalid (neither IPv4 nor IPv6): MindIE takes an IP literal, not a host name"
    if zero and not allow_zero:
        return "is invalid: listening on all addresses needs ServerConfig.allowAllZeroIpListening true"
    try:
        socket.inet_pton(family, clean)
    except (OSError, ValueError):
        return "is invalid: not an IP literal (inet_pton refuses it)"
    return ""


def address_problems(server: dict[str, Any], *, severity: Severity = "error",
                     environ: Mapping[str, str] | None = None) -> list[Problem]:
    """`severity` applies to the literal check; the all-zero rule is documented from 1.0.RC3 on (the hiascend
    1.0.RC3 and 1.0.0 pages name allowAllZeroIpListening in the ipAddress note), so it is always an error."""
    env = os.environ if environ is None else environ
    allow_zero = server.get("allowAllZeroIpListening") is True
    problems = []
    for key, (value, origin) in effective_addresses(server, env).items():
        if origin == "" and key == "managementIpAddress" and "managementIpAddress" not in server:
            continue  # same value as ipAddress, reported there
        where = origin or f"ServerConfig.{key}"
        if not isinstance(value, str):
            continue  # the schema reports the type
        if value == "":
            problems.append(Problem(where, f"Input {key} is empty", severity, native=f"Input {key} is empty",
                                    source=SOURCE))
            continue
        why = _literal_problem(value, allow_zero)
        if why:
            via = f" (from {origin}, which overrides ServerConfig.{key})" if origin else ""
            level: Severity = "error" if "allowAllZeroIpListening" in why else severity
            problems.append(Problem(where, f"{value} {why}{via}", level,
                                    native=f"Input {key} [{value}] {why.split(':')[0]}", source=SOURCE))
    return problems
