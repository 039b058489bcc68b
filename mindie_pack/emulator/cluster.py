"""Multi-node mode of the emulated daemon (`BackendConfig.multiNodesInferEnabled: true`).

What a real multi-node MindIE shows from outside, reproduced between emulated daemons over TCP:
- every node reads the HCCL rank table named by RANK_TABLE_FILE and finds itself in it by its own address
  (MIES_CONTAINER_IP, else ServerConfig.ipAddress); without a rank table, or absent from it, it refuses to start;
- the master (the rank table's first server) waits for every other server to connect, for at most
  HCCL_CONNECT_TIMEOUT seconds (HCCL's default 120); a server that never comes ends the master with HCCL's
  link-establish timeout naming the missing ranks (wording as HCCL logs it: hccl_socket_manager.cc
  "[Wait][LinkEstablish]wait socket establish timeout, role[..] rank[..] timeout[..]", and EI0006 "Getting socket
  times out", as quoted in vllm-ascend issues #1955 and #486);
- workers connect to the master's multiNodesInferPort and serve no business API: only the master does;
- a worker that goes away after the start leaves the master unhealthy (/health 500 "Abnormal node detected",
  MindIE-LLM 2.3.0 http_handler.cpp HandleGetHealthStatus), and a master that goes away ends its workers.
The link is a line of JSON per node; nothing of HCCL's protocol is emulated, only what operators observe.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

DEFAULT_CONNECT_TIMEOUT_S = 120.0  # HCCL_CONNECT_TIMEOUT's default
DEFAULT_MULTI_NODE_PORT = 1120  # BackendConfig.multiNodesInferPort's default (include/config/config_info.h:194)
RETRY_S = 0.2


class ClusterError(Exception):
    """The node cannot join its cluster; the message is what the daemon logs before it fails."""


@dataclass
class Member:
    """This daemon's place in the rank table."""

    ip: str
    index: int  # position in server_list; 0 is the master
    servers: list[dict[str, Any]]
    port: int
    connect_timeout_s: float
    lost: list[str] = field(default_factory=list)  # servers that left after the start (master only)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)  # the worker's link watcher, kept alive

    @property
    def is_master(self) -> bool:
        return self.index == 0

    @property
    def master_ip(self) -> str:
        return address_of(self.servers[0])

    def ranks(self, server: dict[str, Any]) -> str:
        return ",".join(str(d["rank_id"]) for d in server["device"])


def address_of(server: dict[str, Any]) -> str:
    return str(server.get("container_ip") or server["server_id"])


def member_for(config: dict[str, Any], environ: dict[str, str] | None = None) -> Member | None:
    """None for a single-node config; else this node's place, or ClusterError with the reason."""
    env = os.environ if environ is None else environ
    backend = config.get("BackendConfig") or {}
    if not backend.get("multiNodesInferEnabled"):
        return None
    table_path = env.get("RANK_TABLE_FILE") or env.get("RANKTABLEFILE")
    if not table_path:
        raise ClusterError("multiNodesInferEnabled is true but RANK_TABLE_FILE is not set: a multi-node daemon "
                           "needs the HCCL rank table")
    try:
        with open(table_path) as handle:
            table = json.load(handle)
        servers = list(table["server_list"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ClusterError(f"RANK_TABLE_FILE {table_path}: cannot read the rank table ({exc})") from exc
    from mindie_pack.env.ranktable import rank_table_problems

    problems = rank_table_problems(table, multi_node=True)
    if problems:
        raise ClusterError(f"RANK_TABLE_FILE {table_path}: {problems[0]}")
    # ranktable_config.cpp:164: a node is the server whose container_ip is its MIES_CONTAINER_IP (without it, the
    # real daemon takes its hostname's address; the emulator takes ServerConfig.ipAddress) or whose server_id is
    # its HOST_IP; the master is the server holding rank 0 (:192-196).
    container_ip = env.get("MIES_CONTAINER_IP") or (config.get("ServerConfig") or {}).get("ipAddress", "")
    host_ip = env.get("HOST_IP", "")
    index = next((i for i, s in enumerate(servers)
                  if s.get("container_ip") == container_ip or (host_ip and s.get("server_id") == host_ip)), None)
    if index is None:
        raise ClusterError(f"this node (MIES_CONTAINER_IP {container_ip or '-'}, HOST_IP {host_ip or '-'}) matches "
                           f"no container_ip or server_id in {table_path} "
                           f"({', '.join(str(s.get('container_ip')) for s in servers)})")
    master = next(i for i, s in enumerate(servers) if any(str(d["rank_id"]) == "0" for d in s["device"]))
    ordered = [servers[master], *(s for i, s in enumerate(servers) if i != master)]
    timeout = float(env.get("HCCL_CONNECT_TIMEOUT") or DEFAULT_CONNECT_TIMEOUT_S)
    port = int(backend.get("multiNodesInferPort", DEFAULT_MULTI_NODE_PORT))
    me = servers[index]
    return Member(ip=str(me.get("container_ip") or me["server_id"]), index=ordered.index(me), servers=ordered,
                  port=port, connect_timeout_s=timeout)


def _hccl_timeout_lines(member: Member, missing: list[dict[str, Any]]) -> list[str]:
    stamp = time.strftime("%Y-%m-%d-%H:%M:%S")
    pid = os.getpid()
    lines = [f"[ERROR] HCCL({pid},mindieservice_daemon):{stamp} [hccl_socket_manager.cc] [Wait][LinkEstablish]"
             f"wait socket establish timeout, role[0] rank[{member.ranks(s)}] timeout[{member.connect_timeout_s:g}]"
             for s in missing]
    names = "; ".join(f"server {address_of(s)} (rank {member.ranks(s)})" for s in missing)
    lines.append(f"EI0006: [PID: {pid}] {stamp} Getting socket times out. Reason: Remote Rank did not send the data "
                 f"in time: {names} never connected within HCCL_CONNECT_TIMEOUT={member.connect_timeout_s:g} s")
    return lines


Log = Callable[[str], None]


async def join(member: Member, log: Log, on_lost: Log) -> asyncio.AbstractServer | None:
    """Master: wait for every worker (returns the listening server, kept open to notice lost workers).
    Worker: connect to the master and stay connected (on_lost is called when the master goes away)."""
    if member.is_master:
        return await _master(member, log, on_lost)
    await _worker(member, log, on_lost)
    return None


async def _master(member: Member, log: Log, on_lost: Log) -> asyncio.AbstractServer:
    expected = {address_of(s): s for s in member.servers[1:]}
    joined: set[str] = set()
    all_in = asyncio.Event()
    if not expected:
        all_in.set()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            hello = json.loads((await asyncio.wait_for(reader.readline(), member.connect_timeout_s)) or b"{}")
        except (ValueError, TimeoutError, ConnectionError):
            writer.close()
            return
        server_id = str(hello.get("server_id"))
        if server_id not in expected:
            writer.write(b'{"ok": false}\n')
            writer.close()
            return
        joined.add(server_id)
        log(f"[multi-node] server {server_id} (rank {member.ranks(expected[server_id])}) connected "
            f"({len(joined)}/{len(expected)})")
        if joined == set(expected):
            all_in.set()
        try:  # as HCCL: nobody's group is formed before every rank is in
            await asyncio.wait_for(all_in.wait(), member.connect_timeout_s)
        except TimeoutError:
            writer.close()
            return
        writer.write(b'{"ok": true}\n')
        await writer.drain()
        await reader.read()  # until the worker goes away
        if not all_in.is_set() or server_id in member.lost:
            return
        member.lost.append(server_id)
        on_lost(f"server {server_id} (rank {member.ranks(expected[server_id])}) lost its connection")

    server = await asyncio.start_server(handle, member.ip, member.port)
    log(f"[multi-node] master {member.ip}:{member.port} waiting for {len(expected)} server(s) "
        f"(HCCL_CONNECT_TIMEOUT={member.connect_timeout_s:g} s)")
    try:
        await asyncio.wait_for(all_in.wait(), member.connect_timeout_s)
    except TimeoutError:
        server.close()
        missing = [s for sid, s in expected.items() if sid not in joined]
        raise ClusterError("\n".join(_hccl_timeout_lines(member, missing))) from None
    return server


async def _worker(member: Member, log: Log, on_lost: Log) -> None:
    deadline = time.monotonic() + member.connect_timeout_s
    log(f"[multi-node] worker {member.ip} (rank {member.ranks(member.servers[member.index])}) connecting to master "
        f"{member.master_ip}:{member.port}")
    while True:
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(member.master_ip, member.port), max(0.1, deadline - time.monotonic()))
            writer.write(json.dumps({"server_id": member.ip}).encode() + b"\n")
            await writer.drain()
            answer = json.loads((await asyncio.wait_for(reader.readline(),
                                                        max(1.0, deadline - time.monotonic()))) or b"{}")
            if answer.get("ok"):
                break
            writer.close()
            raise ClusterError(f"master {member.master_ip} refused server {member.ip}: not in its rank table")
        except (OSError, TimeoutError, ValueError):
            if time.monotonic() >= deadline:
                master = member.servers[0]
                raise ClusterError("\n".join(_hccl_timeout_lines(member, [master]))) from None
            await asyncio.sleep(RETRY_S)
    log(f"[multi-node] worker {member.ip} joined master {member.master_ip}")

    async def watch() -> None:
        link = writer  # held here: a StreamWriter that is garbage-collected closes its connection
        await reader.read()
        link.close()
        on_lost(f"master {member.master_ip} lost its connection")

    member.tasks.append(asyncio.get_running_loop().create_task(watch()))
