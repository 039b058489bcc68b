"""CLI commands of the deploy stage: deploy, status, logs, stop."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mindie_pack.commands.ui import LazyConsole, escape
from mindie_pack.errors import PackError
from mindie_pack.spec import DEFAULT_SPEC_NAME, load_spec

err = LazyConsole(stderr=True, highlight=False, soft_wrap=True)
out = LazyConsole(highlight=False, soft_wrap=True)


def deploy(
    spec_path: Path | None = typer.Option(None, "--spec", help=f"Deployment spec (default ./{DEFAULT_SPEC_NAME} "
                                          "when present)."),
    model_dir: Path | None = typer.Option(None, "--model-dir", help="Built model directory (default: spec "
                                          "model.output)."),
    mindie_home: Path | None = typer.Option(None, "--mindie-home", help="mindie-service folder (or spec "
                                            "deploy.mindie_home)."),
    mindie_python: Path | None = typer.Option(None, "--mindie-python", help="MindIE >= 3.0: the Python of the "
                                              "environment with mindie_llm (or spec deploy.mindie_python)."),
    env_overrides: list[str] = typer.Option([], "--env", help="NAME=VALUE for the atb/torch service environment "
                                            "(repeatable; overrides our defaults)."),
    port: int | None = typer.Option(None, "--port", min=1, max=65533,
                                    help="Business port; management = port+1, metrics = port+2."),
    devices: str | None = typer.Option(None, "--devices",
                                       help="Physical NPU ids, e.g. 0,1 (ASCEND_RT_VISIBLE_DEVICES)."),
    timeout: float = typer.Option(1800.0, "--timeout", min=1,
                                  help="Start budget in seconds (large models load slowly)."),
    docker_image: str | None = typer.Option(None, "--docker", help="Run the daemon in this MindIE image."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the commands; start nothing."),
    install_config: bool = typer.Option(False, "--install-config", help="Write conf/config.json (after a backup) "
                                        "instead of a separate file."),
    replace: bool = typer.Option(False, "--replace", help="Stop a running deployment first."),
    mindie_version: str | None = typer.Option(None, "--mindie-version", help="Default: the installed one."),
    sets: list[str] = typer.Option([], "--set", help="config.json KEY=VALUE (repeatable)."),
    hosts: str | None = typer.Option(None, "--hosts", help="Several servers, comma-separated (ssh names; the "
                                     "first is the master), or a `hosts:` list in the spec: a multi-node deploy."),
    ssh_config: Path | None = typer.Option(None, "--ssh-config", help="ssh_config file (default ~/.ssh/config)."),
    known_hosts: Path | None = typer.Option(None, "--known-hosts", help="known_hosts file (default "
                                            "~/.ssh/known_hosts)."),
    ssh_user: str | None = typer.Option(None, "--ssh-user", help="SSH user (default: from the ssh config)."),
    remote_pack: str = typer.Option("mindie-pack", "--remote-pack", help="mindie-pack on the nodes (a path when "
                                    "it is not on their PATH)."),
    ascend_root: Path | None = typer.Option(None, "--ascend-root", help="Ascend root on the nodes (multi-node)."),
    world_size: int | None = typer.Option(None, "--world-size", min=1, help="Multi-node: total NPUs, when the "
                                          "model directory is not on this machine."),
    ranktable: Path | None = typer.Option(None, "--ranktable", help="This node is one of several: the cluster's "
                                          "rank table (with --node-ip)."),
    node_ip: str | None = typer.Option(None, "--node-ip", help="This node's server_id in --ranktable."),
    detach: bool = typer.Option(False, "--detach", help="Start and record the daemon without waiting until it "
                                "serves (a multi-node master waits for its workers)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Install the config, start MindIE (<= 2.3 mindieservice_daemon, >= 3.0 mindie_llm_server) and wait until it
    serves: on one server, or on several with --hosts."""
    from rich.status import Status

    from mindie_pack.deploy.lifecycle import DeployOptions, Progress, plan_deploy
    from mindie_pack.deploy.lifecycle import deploy as run_deploy

    spec = load_spec(spec_path) if spec_path or Path(DEFAULT_SPEC_NAME).is_file() else None
    deploy_section = spec.section("deploy") if spec else {}
    if model_dir is None and spec and spec.section("model").get("output"):
        model_dir = spec.resolve(spec.section("model")["output"])
    if mindie_home is None and deploy_section.get("mindie_home") and spec:
        mindie_home = spec.resolve(deploy_section["mindie_home"])
    if mindie_python is None and deploy_section.get("mindie_python") and spec:
        mindie_python = spec.resolve(deploy_section["mindie_python"])
    if model_dir is None or (mindie_home is None and mindie_python is None):
        raise PackError("deploy needs --model-dir and --mindie-home or --mindie-python (or model.output and "
                        "deploy.mindie_home / deploy.mindie_python in the spec)")
    if hosts or (spec and spec.raw.get("hosts")):
        for flag, given in (("--docker", docker_image), ("--install-config", install_config),
                            ("--ranktable", ranktable), ("--node-ip", node_ip), ("--detach", detach),
                            ("--mindie-python", mindie_python), ("--env", env_overrides)):
            if given:
                raise PackError(f"{flag} does not go with --hosts (a multi-node deploy runs each node's "
                                "mindieservice_daemon on the host and writes the rank table itself)")
        assert mindie_home is not None
        _deploy_cluster(spec, hosts, model_dir, mindie_home, ascend_root, devices, world_size, port, timeout,
                        mindie_version, list(sets), replace, ssh_config, known_hosts, ssh_user, remote_pack, as_json,
                        dry_run)
        return
    device_list = _parse_devices(devices)
    if device_list is None and spec and spec.section("hardware").get("devices"):
        device_list = list(spec.section("hardware")["devices"])
    options = DeployOptions(model_dir=model_dir, mindie_home=mindie_home, spec=spec, port=port, devices=device_list,
                            timeout_s=timeout, docker_image=docker_image,
                            install_config=install_config, replace=replace, mindie_version=mindie_version,
                            sets=list(sets), rank_table=ranktable, node_ip=node_ip, detach=detach,
                            mindie_python=mindie_python, env=list(env_overrides))
    if dry_run:
        plan = plan_deploy(options)
        info = {"config_path": str(plan.config_path), "host_command": plan.host_command(),
                "docker_run": plan.container.docker_run_command() if plan.container else None,
                "business_url": plan.endpoints.business_url, "management_url": plan.endpoints.management_url}
        if as_json:
            typer.echo(json.dumps(info, indent=2))
        else:
            out.print(f"# config.json would be written to {plan.config_path}", markup=False)
            out.print(f"# host mode:\n{plan.host_command()}", markup=False)
            if plan.container:
                out.print(f"# container mode:\n{plan.container.docker_run_command()}", markup=False)
        return
    with Status("deploying", console=err.get()) as spinner:
        progress = Progress(stage=lambda text: spinner.update(escape(f"deploy: {text}")),
                            log_line=lambda line: err.print(f"daemon | {line}", style="dim", markup=False))
        state = run_deploy(options, progress)
    if as_json:
        typer.echo(json.dumps(state.to_dict(), indent=2))
        return
    where = f"container {(state.container_id or '')[:12]}" if state.mode == "docker" else f"pid {state.pid}"
    out.print(f"[green]serving[/] {escape(state.model_name)} ({where}, log {escape(state.log_path)})")
    out.print(f"  inference:  {state.business_url}  (/generate, /v1/chat/completions, /v1/completions, /infer)",
              markup=False)
    out.print(f"  management: {state.management_url}  (/health, /v2/health/ready, /stopService)", markup=False)
    out.print(f"  metrics:    {state.metrics_url}/metrics", markup=False)


def _parse_devices(devices: str | None) -> list[int] | None:
    from mindie_pack.env.devices import parse_devices

    return None if devices is None else parse_devices(devices)


def _deploy_cluster(spec: object, hosts: str | None, model_dir: Path, mindie_home: Path, ascend_root: Path | None,
                    devices: str | None, world_size: int | None, port: int | None, timeout: float,
                    mindie_version: str | None, sets: list[str], replace: bool, ssh_config: Path | None,
                    known_hosts: Path | None, ssh_user: str | None, remote_pack: str, as_json: bool,
                    dry_run: bool) -> None:
    import asyncio

    from rich.status import Status

    from mindie_pack.deploy.cluster.orchestrate import ClusterOptions, deploy_cluster, describe_cluster, parse_hosts
    from mindie_pack.deploy.cluster.record import clear_previous_cluster, save_cluster
    from mindie_pack.deploy.cluster.ssh import SshSettings
    from mindie_pack.deploy.state import clear_state, load_state, locked
    from mindie_pack.spec import Spec

    spec_hosts = spec.raw.get("hosts") if isinstance(spec, Spec) else None
    options = ClusterOptions(hosts=parse_hosts(hosts, spec_hosts), model_dir=model_dir.absolute(),
                             mindie_home=str(mindie_home), ascend_root=str(ascend_root) if ascend_root else None,
                             devices=_parse_devices(devices), world_size=world_size, port=port,
                             mindie_version=mindie_version,
                             sets=sets, timeout_s=timeout, replace=replace,
                             ssh=SshSettings(ssh_config, known_hosts, ssh_user), pack=remote_pack)
    if dry_run:
        plan = describe_cluster(options)
        if as_json:
            typer.echo(json.dumps(plan, indent=2))
        else:
            for line in plan["steps"]:
                out.print(line, markup=False)
        return
    with locked("deploy"), Status("deploying", console=err.get()) as spinner:
        clear_previous_cluster(replace)
        try:
            cluster = asyncio.run(deploy_cluster(options, lambda text: spinner.update(f"deploy: {text}"),
                                                 record=save_cluster))
        except (KeyboardInterrupt, asyncio.CancelledError, PackError) as exc:
            recorded = load_state(required=False)
            kept = recorded is not None and (recorded.cluster or {}).get("phase") == "failed"
            if not kept:
                clear_state()  # nothing of it runs any more
            if isinstance(exc, PackError):
                raise
            raise PackError("deploy interrupted: " + ("some nodes could not be stopped; they stay recorded: run "
                                                      "`mindie-pack stop`" if kept else
                                                      "every node started so far was stopped"),
                            exit_code=130) from None
        state = save_cluster(cluster)
    if as_json:
        typer.echo(json.dumps(state.to_dict(), indent=2))
        return
    out.print(f"serving {state.model_name} on {len(cluster['hosts'])} servers", markup=False)
    for node in cluster["hosts"]:
        out.print(f"  {node['role']:<6} {node['host']} ({node['address']})", markup=False)
    out.print(f"  inference:  {state.business_url}", markup=False)


def _cluster_state() -> object | None:
    from mindie_pack.deploy.state import load_state

    state = load_state(required=False)
    return state if state is not None and state.mode == "cluster" else None


def _cluster_status(state: object, as_json: bool) -> None:
    import asyncio

    from mindie_pack.deploy.cluster.orchestrate import cluster_status

    nodes = asyncio.run(cluster_status(state.cluster))  # type: ignore[attr-defined]
    up = all(n["up"] for n in nodes)
    if as_json:
        typer.echo(json.dumps({"up": up, "mode": "cluster", "business_url": state.business_url,  # type: ignore
                               "model_name": state.model_name, "nodes": nodes}, indent=2))  # type: ignore
    else:
        out.print(f"{state.model_name}: {'up' if up else 'down'} on {len(nodes)} servers "  # type: ignore
                  f"({state.business_url})", markup=False)  # type: ignore
        for node in nodes:
            out.print(f"  {node['role']:<6} {node['host']}: {'up' if node['up'] else 'down'}"
                      + (f" ({node['note']})" if node.get("note") else ""), markup=False)
    if not up:
        raise typer.Exit(1)


def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Process, health, models and uptime of the current deployment (exit 1 when it is down)."""
    from mindie_pack.deploy.status import status as get_status

    cluster = _cluster_state()
    if cluster is not None:
        _cluster_status(cluster, as_json)
        return
    report = get_status()
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=2))
    else:
        state = report.state
        word = "[green]up[/]" if report.up else "[red]down[/]"
        where = f"container {(state.container_id or '')[:12]}" if state.mode == "docker" else f"pid {state.pid}"
        out.print(f"{escape(state.model_name)}: {word}  ({where} {'alive' if report.process_alive else 'not running'}"
                  f", health {'200' if report.healthy else 'failing'}, uptime {int(report.uptime_s)} s)")
        if report.note:
            out.print(f"  {escape(report.note)}")
        out.print(escape(f"  models: {', '.join(report.models or []) or '-'}  business {state.business_url}  "
                         f"management {state.management_url}"))
    if not report.up:
        raise typer.Exit(1)


def logs(
    follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing new lines (Ctrl-C ends)."),
    lines: int = typer.Option(50, "-n", "--lines", min=0, help="How many of the last lines to print first."),
    host: str | None = typer.Option(None, "--host", help="Multi-node: the server whose log to print."),
) -> None:
    """The daemon's log of the current deployment (host or container; --host H for one server of several)."""
    from mindie_pack.deploy.logs import LogFollower, tail
    from mindie_pack.deploy.state import load_state

    cluster = _cluster_state()
    if cluster is not None:
        import asyncio

        from mindie_pack.deploy.cluster.orchestrate import cluster_logs

        names = [h["host"] for h in cluster.cluster["hosts"]]  # type: ignore[attr-defined]
        if host is None:
            raise PackError(f"--host is required for a multi-node deployment: one of {', '.join(names)}")
        try:
            asyncio.run(cluster_logs(cluster.cluster, host, lines, follow=follow,  # type: ignore[attr-defined]
                                     emit=typer.echo))
        except KeyboardInterrupt:
            pass
        return
    if host is not None:
        raise PackError("--host: the current deployment runs on this machine only")
    state = load_state()
    assert state is not None
    try:
        if state.mode == "docker" and state.container_id:
            from mindie_pack.deploy.container import container_log

            for line in container_log(state.container_id, lines, follow):
                typer.echo(line)
            return
        path = Path(state.log_path)
        if not path.is_file():
            raise PackError(f"{path}: log not found")
        for line in tail(path, lines):
            typer.echo(line)
        if follow:
            for line in LogFollower(path, from_end=True).follow():
                typer.echo(line)
    except KeyboardInterrupt:
        return


def stop(
    timeout: float = typer.Option(30.0, "--timeout", min=0, help="Grace period before SIGKILL, in seconds."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Stop the current deployment (graceful /stopService, SIGTERM to its processes, then SIGKILL).

    Only processes whose identity matches the one recorded at start are signalled."""
    from mindie_pack.deploy.stop import stop as run_stop

    cluster = _cluster_state()
    if cluster is not None:
        _cluster_stop(timeout, as_json)
        return
    result = run_stop(timeout)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for finding in result["findings"]:
        err.print(f"note: {finding}", markup=False)
    count = len(result["signalled"])
    if count == 0 and result.get("container_id") is None:
        out.print(f"nothing to signal for {result['stopped']}; its state is cleared", markup=False)
        return
    how = f"{count} process(es) signalled" + (f", {len(result['killed'])} needed SIGKILL" if result["killed"] else "")
    out.print(f"stopped {result['stopped']} (pid {result['pid']}; {how})", markup=False)


def _cluster_stop(timeout: float, as_json: bool) -> None:
    import asyncio

    from mindie_pack.deploy.cluster.orchestrate import cluster_stop
    from mindie_pack.deploy.state import clear_state, load_state, locked

    with locked("stop"):
        state = load_state()
        assert state is not None and state.cluster is not None
        results = asyncio.run(cluster_stop(state.cluster, timeout))
        failed = [r for r in results if not r.get("stopped")]
        if not failed:
            clear_state()
    if as_json:
        typer.echo(json.dumps({"stopped": not failed, "nodes": results}))
    else:
        for result in results:
            out.print(f"  {result['host']}: " + ("stopped" if result.get("stopped") else
                                                  f"NOT stopped ({result.get('error')})"), markup=False)
    if failed:
        raise PackError(f"{len(failed)} node(s) not stopped: {', '.join(r['host'] for r in failed)}; the cluster "
                        "record is kept so that `mindie-pack stop` can be run again", exit_code=1)


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
    app.command("status")(status)
    app.command("logs")(logs)
    app.command("stop")(stop)
