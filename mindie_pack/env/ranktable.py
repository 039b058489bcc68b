"""HCCL rank table for multi-card jobs, from `hccn_tool -i N -ip -g`, in the layout hccl_tools.py writes."""

from __future__ import annotations

import json
import re
import socket
import subprocess
from collections.abc import Sequence
from typing import Any

from jsonschema import Draft202012Validator

from mindie_pack.errors import PackError
from mindie_pack.resources import schema_path

_IP = re.compile(r"ipaddr:\s*(\d+\.\d+\.\d+\.\d+)")


def device_ip(hccn_tool: str, device: int) -> str:
    try:
        proc = subprocess.run([hccn_tool, "-i", str(device), "-ip", "-g"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackError(f"{hccn_tool} -i {device} -ip -g failed: {exc}") from exc
    match = _IP.search(proc.stdout)
    if proc.returncode != 0 or not match:
        raise PackError(f"{hccn_tool} -i {device} -ip -g: no ipaddr in the output (exit {proc.returncode}: "
                        f"{(proc.stderr or proc.stdout).strip()[:120]}); configure the device NIC with hccn_tool")
    return match.group(1)


def build_rank_table(hccn_tool: str, devices: Sequence[int], server_id: str | None = None) -> dict[str, Any]:
    server = server_id or socket.gethostbyname(socket.gethostname())
    table = {
        "version": "1.0",
        "server_count": "1",
        "server_list": [{
            "server_id": server,
            "device": [{"device_id": str(d), "device_ip": device_ip(hccn_tool, d), "rank_id": str(rank)}
                       for rank, d in enumerate(devices)],
            "host_nic_ip": "reserve",
        }],
        "status": "completed",
    }
    problems = list(Draft202012Validator(json.loads(schema_path("ranktable.schema.json").read_text()))
                    .iter_errors(table))
    if problems:
        raise PackError(f"rank table does not match schemas/ranktable.schema.json: {problems[0].message}")
    return table
