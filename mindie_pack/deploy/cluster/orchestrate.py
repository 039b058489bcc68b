"""`deploy --hosts`: one MindIE deployment over several servers, driven from one machine over SSH.

The order is the runbook's: doctor on every node; each node's device IPs (hccn_tool, through `mindie-pack
ranktable` on the node); one rank table, checked and copied to every node; the master started, then the workers
inside HCCL's connect window; then the master must serve (health, /v1/models, a one-token request) from here.
Each node runs the single-node `deploy` with `--ranktable --node-ip`, so its own state, `status`, `logs` and `stop`
work there too; the controller records the nodes and acts on all of them. When a node fails, it is named with its
last log lines, and every node started so far is stopped.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindie_pack.deploy.cluster.ssh import Node, SshSettings, connect_all
from mindie_pack.errors import PackError

RANK_TABLE_NAME = "ranktable.json"
LOG_LINES_ON_FAILURE = 20
POLL_S = 1.0


@dataclass
class HostSpec:
    """One server: how to reach it and, where it differs from the others, its own settings."""

    host: str
    address: str | None = None  # its rank-table server_id (default: the IP it was reached at)
    port: int | None = None
    mindie_home: str | None = None
    ascend_root: str | None = None


@dataclass
class ClusterOptions:
    hosts: list[HostSpec]
    model_dir: Path  # the same path on every node
    mindie_home: str
    ascend_root: str | None = None
    devices: list[int] | None = None  # per node (default 0..n-1 for n = worldSize / servers)
    world_size: int | None = None  # default: the model directory's tp, read on the master
    port: int | None = None
    mindie_version: str | None = None
    sets: list[str] = field(default_factory=list)
    timeout_s: float = 1800.0
    replace: bool = False
    ssh: SshSettings = field(default_factory=SshSettings)
    pack: str = "mindie-pack"


def parse_hosts(text: str | None, spec_hosts: Sequence[Any] | None) -> list[HostSpec]:
    """`--hosts h1,h2` or the spec's `hosts:` list (strings, or objects with host/address/port/...)."""
    if text:
        hosts = [HostSpec(h.strip()) for h in text.split(",") if h.strip()]
    else:
        hosts = []
        for index, item in enumerate(spec_hosts or []):
            if isinstance(item, str):
                hosts.append(HostSpec(item))
            elif isinstance(item, dict) and isinstance(item.get("host"), str):
                known = {k: item[k] for k in ("host", "address", "port", "mindie_home", "ascend_root") if k in item}
                hosts.append(HostSpec(**known))
            else:
                raise PackError(f"spec hosts[{index}]: expected a host name or an object with `host`")
    if len(hosts) < 2:
        raise PackError("--hosts: a multi-node deployment needs at least two servers (the first is the master); "
                        "for one server run `mindie-pack deploy` without --hosts")
    names = [h.host for h in hosts]
    duplicate = next((h for h in names if names.count(h) > 1), None)
    if duplicate:
        raise PackError(f"--hosts: {duplicate} is listed twice")
    return hosts


@dataclass
class Member:
    spec: HostSpec
    node: Node
    role: str
    devices: list[int] = field(default_factory=list)
    state: dict[str, Any] | None = None  # the node's own deployment state, once started

    @property
    def label(self) -> str:
        return f"{self.role} {self.spec.host} ({self.node.address})"


def _node_flags(options: ClusterOptions, spec: HostSpec) -> list[str]:
    flags = ["--mindie-home", spec.mindie_home or options.mindie_home]
    if spec.ascend_root or options.ascend_root:
        flags += ["--ascend-root", str(spec.ascend_root or options.ascend_root)]
    return flags


async def _doctor(member: Member, options: ClusterOptions, ports: list[int]) -> None:
    args = ["doctor", "--json", "--model-dir", str(options.model_dir), "--world-size", str(len(member.devices)),
            "--ports", ",".join(map(str, ports)), *_node_flags(options, member.spec)]
    result = await member.node.pack_cmd(args)
    report = result.json("doctor", member.spec.host)
    failed = [c for c in report.get("checks", []) if c.get("status") == "fail"]
    if failed:
        first = failed[0]
        raise PackError(f"{member.label}: doctor: {first.get('name')}: {first.get('detail')}"
                        + (f" ({first['fix']})" if first.get("fix") else "")
                        + (f" (+{len(failed) - 1} more failed checks)" if len(failed) > 1 else ""))


async def _server_entry(member: Member, options: ClusterOptions) -> dict[str, Any]:
    address = member.spec.address or member.node.address
    args = ["ranktable", "--json", "--devices", ",".join(map(str, member.devices)), "--server-id", address,
            *_node_flags(options, member.spec)]
    result = await member.node.pack_cmd(args)
    if result.code != 0:
        raise PackError(f"{member.label}: ranktable: {_last_line(result.stderr or result.stdout)}")
    table = result.json("ranktable", member.spec.host)
    return dict(table["server_list"][0])


def combine_rank_table(servers: list[dict[str, Any]]) -> dict[str, Any]:
    """One table over all servers, rank ids 0..N-1 in server order; checked as HCCL needs it."""
    from mindie_pack.env.ranktable import rank_table_problems

    rank = 0
    server_list = []
    for server in servers:
        devices = []
        for device in server["device"]:
            devices.append({**device, "rank_id": str(rank)})
            rank += 1
        server_list.append({**server, "device": devices})
    table = {"version": "1.0", "server_count": str(len(server_list)), "server_list": server_list,
             "status": "completed"}
    problems = rank_table_problems(table)
    if problems:
        raise PackError(f"the combined rank table is not usable: {problems[0]}")
    return table


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].removeprefix("error: ") if lines else "no output"


async def _node_deploy(member: Member, options: ClusterOptions, table_path: str, *, detach: bool) -> None:
    spec = member.spec
    args = ["deploy", "--json", "--model-dir", str(options.model_dir), "--ranktable", table_path,
            "--node-ip", spec.address or member.node.address, "--devices", ",".join(map(str, member.devices)),
            "--timeout", str(int(options.timeout_s)), *_node_flags(options, spec)]
    port = spec.port or options.port
    if port is not None:
        args += ["--port", str(port)]
    if options.mindie_version:
        args += ["--mindie-version", options.mindie_version]
    if options.replace:
        args.append("--replace")
    if detach:
        args.append("--detach")
    for assignment in options.sets:
        args += ["--set", assignment]
    result = await member.node.pack_cmd(args, timeout=options.timeout_s + 60)
    if result.code != 0:
        raise PackError(f"{member.label}: deploy failed: {_failure_text(result.stderr or result.stdout)}")
    member.state = result.json("deploy", spec.host)


def _failure_text(text: str) -> str:
    return text.strip().removeprefix("error: ").removeprefix("deploy failed: ").strip() or "no output"


async def _log_tail(member: Member, lines: int = LOG_LINES_ON_FAILURE) -> list[str]:
    try:
        result = await member.node.pack_cmd(["logs", "-n", str(lines)], timeout=30)
    except PackError:
        return []
    return result.stdout.splitlines() if result.code == 0 else []


async def _stop(member: Member, timeout_s: float = 30.0) -> dict[str, Any]:
    result = await member.node.pack_cmd(["stop", "--json", "--timeout", str(timeout_s)], timeout=timeout_s + 60)
    if result.code != 0 and "no deployment recorded" in result.stderr:  # it never got as far as starting
        return {"host": member.spec.host, "stopped": True, "note": "nothing was running"}
    if result.code != 0:
        return {"host": member.spec.host, "stopped": False, "error": _last_line(result.stderr or result.stdout)}
    return {"host": member.spec.host, "stopped": True, **result.json("stop", member.spec.host)}


async def _master_serving(master: Member, deadline: float, progress: Callable[[str], None]) -> None:
    """The master must serve, judged from here with the single-node readiness probes; its process is watched
    through `status` on the node so that a master that died is reported at once."""
    from mindie_pack.deploy.probe import Endpoints

    assert master.state is not None
    endpoints = Endpoints(master.state["business_url"], master.state["management_url"],
                          master.state["metrics_url"], master.state["model_name"])
    while True:
        status = await master.node.pack_cmd(["status", "--json"], timeout=60)
        report = status.json("status", master.spec.host) if status.stdout.strip() else {}
        if report and not report.get("process_alive"):
            raise PackError(f"{master.label}: the daemon exited before serving"
                            + (f" ({report.get('note')})" if report.get("note") else ""))
        ok, why = await asyncio.to_thread(_serving_sync, endpoints)
        if ok:
            return
        progress(f"waiting for the master: {why}")
        if time.monotonic() > deadline:
            raise PackError(f"{master.label}: not serving after the start budget (last step: {why})")
        await asyncio.sleep(POLL_S)


def _serving_sync(endpoints: Any) -> tuple[bool, str]:
    import httpx

    from mindie_pack.deploy.probe import serving

    with httpx.Client(timeout=httpx.Timeout(10.0, connect=3.0), trust_env=False) as client:
        return serving(client, endpoints)


def _devices_per_node(options: ClusterOptions, world: int) -> list[int]:
    servers = len(options.hosts)
    if options.devices:
        if len(options.devices) * servers != world:
            raise PackError(f"--devices: {len(options.devices)} per node x {servers} servers = "
                            f"{len(options.devices) * servers}, but the model is built for {world} NPUs")
        return list(options.devices)
    if world % servers:
        raise PackError(f"the model is built for {world} NPUs, which {servers} servers cannot share evenly; "
                        "rebuild with a --tp that is a multiple of the server count")
    return list(range(world // servers))


def _model_world(options: ClusterOptions) -> int:
    if options.world_size:
        return options.world_size
    from mindie_pack.builder.deployable import read_deployable

    if not options.model_dir.is_dir():
        raise PackError(f"--model-dir {options.model_dir}: not on this machine, so its NPU count is unknown here; "
                        "pass --world-size (the tp it was built for)")
    return read_deployable(options.model_dir, check_files=False).tp


async def deploy_cluster(options: ClusterOptions, progress: Callable[[str], None] = lambda text: None
                         ) -> dict[str, Any]:
    """Returns the cluster record (controller state's `cluster` section); raises PackError naming the node."""
    world = _model_world(options)
    devices = _devices_per_node(options, world)
    progress(f"connecting to {len(options.hosts)} servers over SSH")
    nodes = await connect_all([h.host for h in options.hosts], options.ssh, options.pack)
    members = [Member(spec, node, "master" if index == 0 else "worker", devices)
               for index, (spec, node) in enumerate(zip(options.hosts, nodes, strict=True))]
    started: list[Member] = []
    try:
        progress("doctor on every node")
        base = options.port or 1025
        await asyncio.gather(*(_doctor(m, options, [m.spec.port or base, (m.spec.port or base) + 1,
                                                     (m.spec.port or base) + 2]) for m in members))
        progress("collecting device IPs (hccn_tool) from every node")
        servers = await asyncio.gather(*(_server_entry(m, options) for m in members))
        table = combine_rank_table(list(servers))
        text = json.dumps(table, indent=2) + "\n"
        progress("copying the rank table to every node")
        paths = await asyncio.gather(*(m.node.write_state_file(RANK_TABLE_NAME, text) for m in members))
        master, workers = members[0], members[1:]
        progress(f"starting the master on {master.spec.host}")
        started.append(master)
        await _node_deploy(master, options, paths[0], detach=True)
        progress(f"starting {len(workers)} worker(s) inside the connect window")
        started += workers
        results = await asyncio.gather(*(_node_deploy(w, options, p, detach=False)
                                         for w, p in zip(workers, paths[1:], strict=True)), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure
        progress("waiting until the master serves")
        await _master_serving(master, time.monotonic() + options.timeout_s, progress)
    except BaseException as exc:
        await _fail(exc, members, started)
        raise
    finally:
        for node in nodes:
            node.close()
    return {"hosts": [{"host": m.spec.host, "address": m.spec.address or m.node.address, "role": m.role,
                       "state": m.state} for m in members],
            "ssh": {"config": str(options.ssh.config) if options.ssh.config else None,
                    "known_hosts": str(options.ssh.known_hosts) if options.ssh.known_hosts else None,
                    "username": options.ssh.username},
            "pack": options.pack, "rank_table": table}


async def _fail(exc: BaseException, members: list[Member], started: list[Member]) -> None:
    """Name the failed node with its last log lines, then stop every node started so far."""
    if isinstance(exc, PackError):
        failed = next((m for m in members if str(exc).startswith(m.label)), None)
        if failed is not None and failed in started:
            lines = await _log_tail(failed)
            if lines:
                exc.args = (f"{exc.args[0]}\n  last log lines of {failed.spec.host}:\n    " + "\n    ".join(lines),)
    stops = await asyncio.gather(*(_stop(m) for m in started), return_exceptions=True)
    notes = [f"{m.spec.host}: {s.get('error') if isinstance(s, dict) else s}" for m, s in zip(started, stops,
             strict=True) if not (isinstance(s, dict) and s.get("stopped"))]
    if started and isinstance(exc, PackError):
        exc.args = (f"{exc.args[0]}\n  stopped the nodes started so far: "
                    f"{', '.join(m.spec.host for m in started)}"
                    + (f" (could not stop: {'; '.join(notes)})" if notes else ""),)


# --- acting on a recorded cluster --------------------------------------------------------------------------------

async def _reconnect(cluster: dict[str, Any]) -> list[Member]:
    ssh = cluster.get("ssh") or {}
    settings = SshSettings(Path(ssh["config"]) if ssh.get("config") else None,
                           Path(ssh["known_hosts"]) if ssh.get("known_hosts") else None, ssh.get("username"))
    hosts = cluster["hosts"]
    nodes = await connect_all([h["host"] for h in hosts], settings, cluster.get("pack") or "mindie-pack")
    return [Member(HostSpec(h["host"], h.get("address")), node, h["role"], state=h.get("state"))
            for h, node in zip(hosts, nodes, strict=True)]


async def cluster_status(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    members = await _reconnect(cluster)
    try:
        async def one(member: Member) -> dict[str, Any]:
            result = await member.node.pack_cmd(["status", "--json"], timeout=60)
            if not result.stdout.strip():
                return {"host": member.spec.host, "role": member.role, "up": False,
                        "note": _last_line(result.stderr)}
            report = result.json("status", member.spec.host)
            return {"host": member.spec.host, "role": member.role, "up": bool(report.get("up")),
                    "process_alive": report.get("process_alive"), "healthy": report.get("healthy"),
                    "note": report.get("note", ""), "pid": report.get("pid")}

        return list(await asyncio.gather(*(one(m) for m in members)))
    finally:
        for m in members:
            m.node.close()


async def cluster_logs(cluster: dict[str, Any], host: str, lines: int, *, follow: bool = False,
                       emit: Callable[[str], None] = print) -> None:
    """`logs --host H [-f]`: the node's own `mindie-pack logs`, streamed line by line (until Ctrl-C with -f)."""
    names = [h["host"] for h in cluster["hosts"]]
    if host not in names:
        raise PackError(f"--host {host}: not a node of this deployment ({', '.join(names)})")
    members = await _reconnect({**cluster, "hosts": [h for h in cluster["hosts"] if h["host"] == host]})
    try:
        args = ["logs", "-n", str(lines)] + (["--follow"] if follow else [])
        code, errors = await members[0].node.stream_pack_cmd(args, emit, timeout=None if follow else 60)
        if code != 0:
            raise PackError(f"{host}: logs: {_last_line(errors)}")
    finally:
        members[0].node.close()


async def cluster_stop(cluster: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
    """Stop the master first (it drains its requests), then the workers."""
    members = await _reconnect(cluster)
    try:
        results = [await _stop(members[0], timeout_s)]
        results += await asyncio.gather(*(_stop(m, timeout_s) for m in members[1:]))
        return results
    finally:
        for m in members:
            m.node.close()
