"""CLI commands of the deploy stage: deploy, status, logs, stop."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape

from mindie_pack.errors import PackError
from mindie_pack.spec import DEFAULT_SPEC_NAME, load_spec

err = Console(stderr=True, highlight=False, soft_wrap=True)
out = Console(highlight=False, soft_wrap=True)


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
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Install the config, start MindIE (<= 2.3 mindieservice_daemon, >= 3.0 mindie_llm_server), wait for it."""
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
    device_list = None
    if devices:
        try:
            device_list = [int(d) for d in devices.split(",") if d.strip()]
        except ValueError:
            raise PackError(f"--devices {devices!r}: expected comma-separated NPU ids") from None
    elif spec and spec.section("hardware").get("devices"):
        device_list = list(spec.section("hardware")["devices"])
    options = DeployOptions(model_dir=model_dir, mindie_home=mindie_home, spec=spec, port=port, devices=device_list,
                            timeout_s=timeout, docker_image=docker_image,
                            install_config=install_config, replace=replace, mindie_version=mindie_version,
                            sets=list(sets), mindie_python=mindie_python, env=list(env_overrides))
    if dry_run:
        plan = plan_deploy(options)
        info = {"config_path": str(plan.config_path), "host_command": plan.host_command(),
                "docker_run": plan.container.docker_run_command() if plan.container else None,
                "business_url": plan.endpoints.business_url, "management_url": plan.endpoints.management_url}
        if as_json:
            typer.echo(json.dumps(info, indent=2))
        else:
            out.print(f"# config.json would be written to {plan.config_path}")
            out.print(f"# host mode:\n{plan.host_command()}")
            if plan.container:
                out.print(f"# container mode:\n{plan.container.docker_run_command()}")
        return
    with Status("deploying", console=err) as spinner:
        progress = Progress(stage=lambda text: spinner.update(f"deploy: {text}"),
                            log_line=lambda line: err.print(f"daemon | {line}", style="dim", markup=False))
        state = run_deploy(options, progress)
    if as_json:
        typer.echo(json.dumps(state.to_dict(), indent=2))
        return
    where = f"container {(state.container_id or '')[:12]}" if state.mode == "docker" else f"pid {state.pid}"
    out.print(f"[green]serving[/] {escape(state.model_name)} ({where}, log {escape(state.log_path)})")
    out.print(f"  inference:  {state.business_url}  (/generate, /v1/chat/completions, /v1/completions, /infer)")
    out.print(f"  management: {state.management_url}  (/health, /v2/health/ready, /stopService)")
    out.print(f"  metrics:    {state.metrics_url}/metrics")


def status(as_json: bool = typer.Option(False, "--json")) -> None:
    """Process, health, models and uptime of the current deployment (exit 1 when it is down)."""
    from mindie_pack.deploy.status import status as get_status

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
) -> None:
    """The daemon's log of the current deployment (host or container)."""
    from mindie_pack.deploy.logs import LogFollower, tail
    from mindie_pack.deploy.state import load_state

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

    result = run_stop(timeout)
    if as_json:
        typer.echo(json.dumps(result))
        return
    for finding in result["findings"]:
        err.print(f"note: {finding}", markup=False)
    count = len(result["signalled"])
    how = f"{count} process(es) signalled" + (f", {len(result['killed'])} needed SIGKILL" if result["killed"] else "")
    out.print(f"stopped {result['stopped']} (pid {result['pid']}; {how})", markup=False)


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy)
    app.command("status")(status)
    app.command("logs")(logs)
    app.command("stop")(stop)
