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
import shlex
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindie_pack.deploy.cluster.ssh import Node, SshSettings, connect_all
from mindie_pack.errors import PackError

RANK_TABLE_NAME = "ranktable.json"
LOG_LINES_ON_FAILURE = 20
POLL_S = 2.0


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
    import ipaddress

    address = member.spec.address or member.node.address
    try:
        ipaddress.ip_address(address)
    except ValueError:
        raise PackError(f"{member.label}: its rank-table server_id must be an IP address, and SSH gave none "
                        f"({address}); give the node an `address:` in the spec's hosts") from None
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


async def _node_deploy(member: Member, options: ClusterOptions, table_path: str) -> None:
    """The node's own `deploy --detach`: it returns once the daemon is past its start checks; readiness is
    watched for all nodes together (a worker's group forms only when every rank is in)."""
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


async def _until_serving(members: list[Member], deadline: float, progress: Callable[[str], None]) -> None:
    """Until the master serves, judged from here with the single-node readiness probes (health, /v1/models, a
    one-token request). Every node's daemon is watched through `status` there, so the first one that dies is
    named at once instead of after the start budget."""
    from mindie_pack.deploy.probe import Endpoints

    master = members[0]
    assert master.state is not None
    endpoints = Endpoints(master.state["business_url"], master.state["management_url"],
                          master.state["metrics_url"], master.state["model_name"])
    while True:
        reports = await asyncio.gather(*(m.node.pack_cmd(["status", "--json"], timeout=60) for m in members))
        for member, result in zip(members, reports, strict=True):
            report = result.json("status", member.spec.host) if result.stdout.strip() else {}
            if not report.get("process_alive"):
                note = report.get("note") or _last_line(result.stderr)
                raise PackError(f"{member.label}: the daemon is not running ({note})")
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


def describe_cluster(options: ClusterOptions) -> dict[str, Any]:
    """`deploy --hosts --dry-run`: what would run where, without connecting to anything."""
    world = _model_world(options)
    devices = _devices_per_node(options, world)
    steps = [f"# {len(options.hosts)} servers, {len(devices)} NPU(s) each (devices {','.join(map(str, devices))}), "
             f"master {options.hosts[0].host}"]
    for index, spec in enumerate(options.hosts):
        role = "master" if index == 0 else "worker"
        address = spec.address or "<the address SSH reaches>"
        flags = " ".join(shlex.quote(f) for f in _node_flags(options, spec))
        steps.append(f"# {role} {spec.host}: {options.pack} doctor --json --model-dir {options.model_dir} "
                     f"--world-size {len(devices)} {flags}")
        steps.append(f"#   {options.pack} ranktable --json --devices {','.join(map(str, devices))} --server-id "
                     f"{address} {flags}")
        port = spec.port or options.port
        steps.append(f"#   {options.pack} deploy --detach --model-dir {options.model_dir} --ranktable "
                     f"<state>/node/{RANK_TABLE_NAME} --node-ip {address} {flags}"
                     + (f" --port {port}" if port else ""))
    steps.append("# then: wait until every daemon runs and the master serves (health, /v1/models, one token)")
    return {"hosts": [h.host for h in options.hosts], "devices_per_node": devices, "world_size": world,
            "steps": steps}


def cluster_record(options: ClusterOptions, members: list[Member], table: dict[str, Any] | None,
                   phase: str) -> dict[str, Any]:
    """What the controller keeps: enough to reach every node again (never the nodes' identity tokens)."""
    hosts = []
    for m in members:
        state = {k: v for k, v in (m.state or {}).items() if k != "token"} if m.state else None
        hosts.append({"host": m.spec.host, "address": m.spec.address or m.node.address, "role": m.role,
                      "state": state})
    return {"phase": phase, "hosts": hosts, "model_dir": str(options.model_dir),
            "ssh": {"config": str(options.ssh.config) if options.ssh.config else None,
                    "known_hosts": str(options.ssh.known_hosts) if options.ssh.known_hosts else None,
                    "username": options.ssh.username},
            "pack": options.pack, "rank_table": table}


async def deploy_cluster(options: ClusterOptions, progress: Callable[[str], None] = lambda text: None,
                         record: Callable[[dict[str, Any]], None] = lambda cluster: None) -> dict[str, Any]:
    """Returns the cluster record (controller state's `cluster` section); raises PackError naming the node.

    `record` is called before the first node starts (phase "starting") so that an interrupted controller leaves
    a record `stop` can act on; SIGTERM and SIGHUP end the deploy like Ctrl-C: every started node is stopped."""
    import signal

    world = _model_world(options)
    devices = _devices_per_node(options, world)
    progress(f"connecting to {len(options.hosts)} servers over SSH")
    nodes = await connect_all([h.host for h in options.hosts], options.ssh, options.pack)
    members = [Member(spec, node, "master" if index == 0 else "worker", devices)
               for index, (spec, node) in enumerate(zip(options.hosts, nodes, strict=True))]
    started: list[Member] = []
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    for sig in (signal.SIGTERM, signal.SIGHUP):
        loop.add_signal_handler(sig, task.cancel)  # type: ignore[union-attr]
    table: dict[str, Any] | None = None
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
        record(cluster_record(options, members, table, "starting"))
        master, workers = members[0], members[1:]
        progress(f"starting the master on {master.spec.host}")
        started.append(master)
        await _node_deploy(master, options, paths[0])
        progress(f"starting {len(workers)} worker(s) inside the connect window")
        started += workers
        results = await asyncio.gather(*(_node_deploy(w, options, p)
                                         for w, p in zip(workers, paths[1:], strict=True)), return_exceptions=True)
        failure = next((r for r in results if isinstance(r, BaseException)), None)
        if failure is not None:
            raise failure
        progress("waiting until the master serves")
        await _until_serving(members, time.monotonic() + options.timeout_s, progress)
    except BaseException as exc:
        await _fail(exc, members, started)
        if getattr(exc, "unstopped_nodes", None):  # some node still runs: keep a record `stop` can act on
            record(cluster_record(options, members, table, "failed"))
        raise
    finally:
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        for node in nodes:
            node.close()
    return cluster_record(options, members, table, "serving")


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
    exc.unstopped_nodes = notes  # type: ignore[attr-defined]  # the caller keeps its record while any runs
    if started and isinstance(exc, PackError):
        exc.args = (f"{exc.args[0]}\n  stopped the nodes started so far: "
                    f"{', '.join(m.spec.host for m in started)}"
                    + (f" (could not stop: {'; '.join(notes)})" if notes else ""),)


# --- acting on a recorded cluster --------------------------------------------------------------------------------

def _settings(cluster: dict[str, Any]) -> SshSettings:
    ssh = cluster.get("ssh") or {}
    return SshSettings(Path(ssh["config"]) if ssh.get("config") else None,
                       Path(ssh["known_hosts"]) if ssh.get("known_hosts") else None, ssh.get("username"))


async def _each_node(cluster: dict[str, Any], action: Callable[[Member], Any],
                     unreachable: Callable[[dict[str, Any], PackError], dict[str, Any]]) -> list[dict[str, Any]]:
    """Run `action` on every recorded node over its own connection; a node that cannot be reached (or fails)
    gets `unreachable(host, error)` and does not keep the others from being acted on."""
    from mindie_pack.deploy.cluster.ssh import connect

    pack = cluster.get("pack") or "mindie-pack"

    async def one(host: dict[str, Any]) -> dict[str, Any]:
        try:
            node = await connect(host["host"], _settings(cluster), pack)
        except PackError as exc:
            return unreachable(host, exc)
        try:
            return dict(await action(Member(HostSpec(host["host"], host.get("address")), node, host["role"],
                                            state=host.get("state"))))
        except PackError as exc:
            return unreachable(host, exc)
        finally:
            node.close()

    return list(await asyncio.gather(*(one(h) for h in cluster["hosts"])))


async def cluster_status(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    async def one(member: Member) -> dict[str, Any]:
        result = await member.node.pack_cmd(["status", "--json"], timeout=60)
        if not result.stdout.strip():
            return {"host": member.spec.host, "role": member.role, "up": False, "note": _last_line(result.stderr)}
        report = result.json("status", member.spec.host)
        return {"host": member.spec.host, "role": member.role, "up": bool(report.get("up")),
                "process_alive": report.get("process_alive"), "healthy": report.get("healthy"),
                "note": report.get("note", ""), "pid": report.get("pid")}

    return await _each_node(cluster, one, lambda host, exc: {"host": host["host"], "role": host["role"],
                                                             "up": False, "note": str(exc)})


async def cluster_logs(cluster: dict[str, Any], host: str, lines: int, *, follow: bool = False,
                       emit: Callable[[str], None] = print) -> None:
    """`logs --host H [-f]`: the node's own `mindie-pack logs`, streamed line by line (until Ctrl-C with -f)."""
    names = [h["host"] for h in cluster["hosts"]]
    if host not in names:
        raise PackError(f"--host {host}: not a node of this deployment ({', '.join(names)})")
    from mindie_pack.deploy.cluster.ssh import connect

    node = await connect(host, _settings(cluster), cluster.get("pack") or "mindie-pack")
    try:
        args = ["logs", "-n", str(lines)] + (["--follow"] if follow else [])
        code, errors = await node.stream_pack_cmd(args, emit, timeout=None if follow else 60)
        if code != 0:
            raise PackError(f"{host}: logs: {_last_line(errors)}")
    finally:
        node.close()


async def cluster_stop(cluster: dict[str, Any], timeout_s: float) -> list[dict[str, Any]]:
    """Stop the master first (it drains its requests), then the workers; a node that cannot be reached is
    reported as not stopped and the others are still stopped."""
    def failed(host: dict[str, Any], exc: PackError) -> dict[str, Any]:
        return {"host": host["host"], "stopped": False, "error": str(exc)}

    hosts = cluster["hosts"]

    async def stop_one(member: Member) -> dict[str, Any]:
        return await _stop(member, timeout_s)

    results = await _each_node({**cluster, "hosts": hosts[:1]}, stop_one, failed)
    results += await _each_node({**cluster, "hosts": hosts[1:]}, stop_one, failed)
    return results
