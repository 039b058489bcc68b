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


def rank_table_problems(table: Any) -> list[str]:
    """What makes a rank table unusable, one line each: its schema, then what HCCL needs of a multi-server table:
    server_count equal to the servers listed, unique servers and device IPs, and rank ids 0..N-1 in server order."""
    schema = json.loads(schema_path("ranktable.schema.json").read_text())
    problems = [f"{'.'.join(str(p) for p in e.absolute_path) or '(top level)'}: {e.message}"
                for e in Draft202012Validator(schema).iter_errors(table)]
    if problems:
        return problems
    servers = table["server_list"]
    if int(table["server_count"]) != len(servers):
        problems.append(f"server_count: {table['server_count']} but server_list has {len(servers)} servers")
    seen_servers: set[str] = set()
    seen_ips: dict[str, str] = {}
    expected_rank = 0
    for index, server in enumerate(servers):
        sid = server["server_id"]
        if sid in seen_servers:
            problems.append(f"server_list[{index}].server_id: {sid} is listed twice")
        seen_servers.add(sid)
        for dev_index, device in enumerate(server["device"]):
            where = f"server_list[{index}].device[{dev_index}]"
            ip = device["device_ip"]
            if ip in seen_ips:
                problems.append(f"{where}.device_ip: {ip} is also {seen_ips[ip]}'s")
            seen_ips[ip] = f"{sid} device {device['device_id']}"
            if int(device["rank_id"]) != expected_rank:
                problems.append(f"{where}.rank_id: expected {expected_rank} (rank ids run 0..N-1 in server order), "
                                f"got {device['rank_id']}")
            expected_rank += 1
    return problems
