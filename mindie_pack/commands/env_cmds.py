"""CLI commands of the env stage: `env`, `doctor`, `ranktable`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mindie_pack.commands.ui import LazyConsole, escape
from mindie_pack.errors import PackError
from mindie_pack.spec import DEFAULT_SPEC_NAME, load_spec

if TYPE_CHECKING:
    from mindie_pack.env import Installation
    from mindie_pack.spec import Spec

out = LazyConsole(highlight=False, soft_wrap=True)
STATUS_STYLE = {"ok": "[green]ok[/]", "warn": "[yellow]warn[/]", "fail": "[red]FAIL[/]"}


def _spec(path: Path | None) -> Spec | None:
    if path is not None or Path(DEFAULT_SPEC_NAME).is_file():
        return load_spec(path)
    return None


def _spec_path(spec: Spec | None, section: str, key: str) -> Path | None:
    value = spec.section(section).get(key) if spec else None
    return spec.resolve(value) if spec and value else None


def _devices(text: str | None, spec: Spec | None) -> list[int] | None:
    from mindie_pack.env.devices import parse_devices

    if text is not None:
        return parse_devices(text)
    devices = spec.section("hardware").get("devices") if spec else None
    return list(devices) if devices else None


def _host_devices(ids: list[int] | None, inst: Installation) -> list[int] | None:
    """Device ids this host has (when npu-smi can tell)."""
    from mindie_pack.env.devices import check_devices, host_npu_ids

    if ids:
        check_devices(ids, available=host_npu_ids(inst.npu_smi))
    return ids


def _ports(text: str) -> list[int]:
    if not text.strip():
        return []  # --ports "": check no port
    parts = [p.strip() for p in text.split(",")]
    if not all(p.isdigit() and int(p) <= 65535 for p in parts):
        raise PackError(f"--ports {text!r}: expected comma-separated TCP ports (0..65535), e.g. 1025,1026,1027")
    return [int(p) for p in parts]


def _installation(ascend_root: Path | None, mindie_home: Path | None, spec: Spec | None) -> Installation:
    """The install the flags (or the spec) name; a named path that is not there is refused, never ignored."""
    from mindie_pack.env import discover
    from mindie_pack.env.discovery import require_given_paths

    root = ascend_root or _spec_path(spec, "deploy", "ascend_root")
    home = mindie_home or _spec_path(spec, "deploy", "mindie_home")
    inst = discover(ascend_root=root, mindie_home=home)
    require_given_paths(root, home, inst,
                        root_flag="--ascend-root" if ascend_root else "deploy.ascend_root (spec)",
                        home_flag="--mindie-home" if mindie_home else "deploy.mindie_home (spec)")
    return inst


def env(
    ascend_root: Path | None = typer.Option(None, "--ascend-root", help="Ascend install root (/usr/local/Ascend)."),
    mindie_home: Path | None = typer.Option(None, "--mindie-home", help="MindIE (mindie-service) folder."),
    spec_path: Path | None = typer.Option(None, "--spec", help="Deployment spec."),
    profile: str | None = typer.Option(None, "--profile", help="Build profile (llm-boost sets ENFORCE_EAGER)."),
    mindformers_src: Path | None = typer.Option(None, "--mindformers-src", help="Put on PYTHONPATH."),
    devices: str | None = typer.Option(None, "--devices", help="ASCEND_RT_VISIBLE_DEVICES, e.g. 0,1."),
    shell: bool = typer.Option(False, "--shell", help="Print export lines to eval."),
    mindie_python: Path | None = typer.Option(None, "--mindie-python", help="MindIE 3.0: the Python with mindie_llm "
                                              "(prints the atb environment of that release)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """The environment the service needs (set_env.sh scripts sourced in order, plus the backend's own variables:
    ms by default; atb/torch with --profile atb|torch or --mindie-python)."""
    from rich.table import Table

    from mindie_pack.env import daemon_environment

    spec = _spec(spec_path)
    model = spec.section("model") if spec else {}
    chosen = profile or model.get("profile", "mf-ckpt")
    if chosen in ("atb", "torch") or mindie_python is not None:
        result = _atb_env(ascend_root or _spec_path(spec, "deploy", "ascend_root"),
                          mindie_home or _spec_path(spec, "deploy", "mindie_home"), mindie_python,
                          _devices(devices, spec))
    else:
        inst = _installation(ascend_root, mindie_home, spec)
        result = daemon_environment(
            installation=inst,
            profile=chosen,
            mindformers_src=mindformers_src or (spec.resolve(model["mindformers_src"])
                                                if model.get("mindformers_src") else None),
            devices=_host_devices(_devices(devices, spec), inst),
        )
    if shell:
        for line in result.export_lines():
            typer.echo(line)
        return
    if as_json:
        typer.echo(json.dumps({"sourced": result.sourced, "missing": result.missing, "set": result.added},
                              indent=2))
        return
    for script in result.sourced:
        out.print(f"sourced {script}", markup=False)
    for script in result.missing:
        out.print(f"[yellow]missing[/] {escape(str(script))}")
    table = Table(title="variables set for the daemon")
    table.add_column("variable")
    table.add_column("value", overflow="fold")
    for key, value in sorted(result.added.items()):
        table.add_row(escape(key), escape(value))
    out.print(table)


def doctor(
    spec_path: Path | None = typer.Option(None, "--spec", help="Deployment spec (worldSize, ports, model dir)."),
    ascend_root: Path | None = typer.Option(None, "--ascend-root"),
    mindie_home: Path | None = typer.Option(None, "--mindie-home"),
    config_path: Path | None = typer.Option(None, "--config", help="A config.json to check (file rules)."),
    model_dir: Path | None = typer.Option(None, "--model-dir", help="A built model directory to check."),
    world_size: int | None = typer.Option(None, "--world-size", min=1),
    ports: str | None = typer.Option(None, "--ports",
                                     help="Ports that must be free, e.g. 1025,1026,1027 (\"\": none)."),
    backend: str | None = typer.Option(None, "--backend", help="atb or torch: check for MindIE's atb/torch path "
                                       "(default: ms, or atb when the model dir was built for it)."),
    mindie_python: Path | None = typer.Option(None, "--mindie-python", help="MindIE 3.0: the Python with mindie_llm."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check the machine for a MindIE deployment (ms backend, or atb/torch); exit 1 on any failed check."""
    from rich.table import Table

    from mindie_pack.env import run_doctor

    spec = _spec(spec_path)
    server = spec.section("server") if spec else {}
    port_list = _ports(ports) if ports is not None else \
        [int(server.get(k, d)) for k, d in (("port", 1025), ("management_port", 1026), ("metrics_port", 1027))]
    if spec and model_dir is None and spec.section("model").get("output"):
        model_dir = spec.resolve(spec.section("model")["output"])
    inst = _installation(ascend_root, mindie_home, spec)
    checks = run_doctor(
        ascend_root=inst.root, mindie_home=inst.mindie_service,
        config_path=config_path, model_dir=model_dir,
        world_size=world_size or (spec.section("parallel").get("tp") if spec else None), ports=port_list,
        profile=spec.section("model").get("profile", "mf-ckpt") if spec else _built_profile(model_dir),
        backend=backend, mindie_python=mindie_python,
    )
    failed = any(c.status == "fail" for c in checks)
    if as_json:
        typer.echo(json.dumps({"ok": not failed, "checks": [c.to_dict() for c in checks]}, indent=2))
    else:
        table = Table(title="mindie-pack doctor")
        for column in ("check", "status", "detail", "fix"):
            table.add_column(column, overflow="fold")
        for check in checks:
            table.add_row(escape(check.name), STATUS_STYLE[check.status], escape(check.detail), escape(check.fix))
        out.print(table)
    if failed:
        raise typer.Exit(1)


def _atb_env(ascend_root: Path | None, mindie_home: Path | None, mindie_python: Path | None,
             devices: list[int] | None) -> Any:
    from mindie_pack.deploy.installed import ascend_root_for
    from mindie_pack.env import discover
    from mindie_pack.env.atb_env import atb_environment
    from mindie_pack.env.mindie_llm import discover_mindie_llm, python_of

    python = mindie_python or (python_of(mindie_home) if mindie_home else None)
    llm = discover_mindie_llm(python) if python else None
    inst = discover(ascend_root=ascend_root or (ascend_root_for(llm) if llm else None),
                    mindie_home=None if llm else mindie_home)
    version = (llm.version if llm else None) or inst.version("mindie")
    return atb_environment(root=inst.root, mindie_version=version, mindie_service=inst.mindie_service,
                           devices=devices)


def _built_profile(model_dir: Path | None) -> str:
    from mindie_pack.builder.hf_profile import is_hf_layout

    return "atb" if model_dir is not None and is_hf_layout(model_dir) else "mf-ckpt"


def ranktable(
    devices: str = typer.Option(..., "--devices", help="NPU ids in rank order, e.g. 0,1,2,3."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Rank table JSON to write."),
    ascend_root: Path | None = typer.Option(None, "--ascend-root"),
    mindie_home: Path | None = typer.Option(None, "--mindie-home", help="Find the Ascend root from MindIE's folder."),
    server_id: str | None = typer.Option(None, "--server-id", help="Host IP (default: this host's address)."),
    as_json: bool = typer.Option(False, "--json", help="Print the table instead of (or besides) writing it."),
) -> None:
    """Write the HCCL rank table for this server from `hccn_tool -i N -ip -g`."""
    from mindie_pack.env import discover
    from mindie_pack.env.ranktable import build_rank_table

    if output is None and not as_json:
        raise PackError("ranktable: give --output FILE, or --json to print the table")
    inst = discover(ascend_root=ascend_root, mindie_home=mindie_home)
    if inst.hccn_tool is None:
        raise PackError("hccn_tool not found (driver/tools/hccn_tool): it reports each NPU's NIC address")
    ids = _devices(devices, None) or []  # hccn_tool itself refuses an NPU the host does not have
    table = build_rank_table(inst.hccn_tool, ids, server_id)
    if output is not None:
        from mindie_pack.fsutil import atomic_write_text

        atomic_write_text(output, json.dumps(table, indent=2) + "\n", 0o640)
    if as_json:
        typer.echo(json.dumps(table, indent=2))
    else:
        out.print(f"wrote {output} ({len(ids)} device(s))", markup=False)


def register(app: typer.Typer) -> None:
    app.command("env")(env)
    app.command("doctor")(doctor)
    app.command("ranktable")(ranktable)
