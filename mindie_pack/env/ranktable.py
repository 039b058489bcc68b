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


def build_rank_table(hccn_tool: str, devices: Sequence[int], server_id: str | None = None,
                     container_ip: str | None = None) -> dict[str, Any]:
    """This server's table. `container_ip` (default: the server's own address, as on the host network) is what a
    multi-node MindIE matches MIES_CONTAINER_IP against; single-server tables may leave it out."""
    server = server_id or socket.gethostbyname(socket.gethostname())
    entry: dict[str, Any] = {
        "server_id": server,
        "container_ip": container_ip or server,
        "device": [{"device_id": str(d), "device_ip": device_ip(hccn_tool, d), "rank_id": str(rank)}
                   for rank, d in enumerate(devices)],
        "host_nic_ip": "reserve",
    }
    table = {"version": "1.0", "server_count": "1", "server_list": [entry], "status": "completed"}
    problems = rank_table_problems(table)
    if problems:
        raise PackError(f"rank table does not match schemas/ranktable.schema.json: {problems[0]}")
    return table


# What a multi-node MindIE checks of the rank table before it starts (MindIE-LLM 2.3.0
# src/config_manager/ranktable_config.cpp, unchanged in 3.0.0): server_count in [2, 60] (:28-29, :267) and equal to
# the servers listed (:274); 1 to 32 devices per server (:26-27, :281), the same on every server (:286-292); a
# non-empty container_ip on every server (:293-297); device_id in [0, 63] (:207-216), device_ip an IP (:231),
# rank_id in [0, 511] (:242-251). Each node finds itself by MIES_CONTAINER_IP == container_ip or HOST_IP ==
# server_id (:164), the master is the server holding rank_id 0 (:192-196), and worldSize / npuDeviceIds become
# that node's devices (backend_config.cpp:250-275).
MULTI_NODE_SERVERS = (2, 60)
DEVICES_PER_SERVER = (1, 32)
MAX_DEVICE_ID = 63
MAX_RANK_ID = 511


def rank_table_problems(table: Any, *, multi_node: bool | None = None) -> list[str]:
    """What makes a rank table unusable, one line each: its schema; unique servers and device IPs and rank ids
    0..N-1 in server order (what HCCL needs); and, for a table of several servers (or `multi_node=True`), the
    checks a multi-node MindIE applies."""
    import ipaddress

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
    if multi_node or (multi_node is None and len(servers) > 1):
        low, high = MULTI_NODE_SERVERS
        if not low <= len(servers) <= high:
            problems.append(f"server_count: a multi-node MindIE takes {low} to {high} servers, got {len(servers)}")
        per_server = len(servers[0]["device"])
        if not DEVICES_PER_SERVER[0] <= per_server <= DEVICES_PER_SERVER[1]:
            problems.append(f"server_list[0].device: {per_server} devices; MindIE takes {DEVICES_PER_SERVER[0]} to "
                            f"{DEVICES_PER_SERVER[1]} per server")
        for index, server in enumerate(servers):
            if len(server["device"]) != per_server:
                problems.append(f"server_list[{index}].device: {len(server['device'])} devices, but the first "
                                f"server has {per_server}; MindIE needs the same number on every server")
            if not server.get("container_ip"):
                problems.append(f"server_list[{index}].container_ip: missing or empty; MindIE matches it against "
                                "the node's MIES_CONTAINER_IP (on the host network: the server's own address)")
            for dev_index, device in enumerate(server["device"]):
                where = f"server_list[{index}].device[{dev_index}]"
                if int(device["device_id"]) > MAX_DEVICE_ID:
                    problems.append(f"{where}.device_id: {device['device_id']} is out of MindIE's range "
                                    f"[0, {MAX_DEVICE_ID}]")
                if int(device["rank_id"]) > MAX_RANK_ID:
                    problems.append(f"{where}.rank_id: {device['rank_id']} is out of MindIE's range "
                                    f"[0, {MAX_RANK_ID}]")
                try:
                    ipaddress.ip_address(device["device_ip"])
                except ValueError:
                    problems.append(f"{where}.device_ip: {device['device_ip']} is not an IP address")
    return problems
