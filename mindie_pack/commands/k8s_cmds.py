"""CLI commands for Kubernetes: `k8s render` (manifests from a rendered config.json, optionally applied)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mindie_pack.commands.ui import LazyConsole

k8s_app = typer.Typer(help="Kubernetes manifests for MindIE (Ascend device plugin).", no_args_is_help=True)


def _read_json(path: Path, what: str) -> Any:
    from mindie_pack.errors import PackError

    if not path.is_file():
        raise PackError(f"{path}: {what} not found (or not a regular file)")
    if path.stat().st_size > 16 << 20:
        raise PackError(f"{path}: {what} is larger than 16 MiB; expected a JSON file")
    try:
        return json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise PackError(f"{path}: {what} is not valid JSON ({exc.__class__.__name__}: {exc})") from exc


def _model_bytes(config: dict[str, Any]) -> int | None:
    """Weight bytes from the model directory's manifest when this machine can read it (the start-up window)."""
    try:
        weights = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["modelWeightPath"]
        manifest = json.loads((Path(weights) / "manifest.json").read_text())
        return int(sum(f["bytes"] for f in manifest.get("weights", [])))
    except (KeyError, IndexError, TypeError, ValueError, OSError):
        return None


def _env_pairs(values: list[str]) -> dict[str, str]:
    from mindie_pack.env.atb_env import parse_overrides  # the one parser of --env NAME=VALUE (deploy uses it too)

    return parse_overrides(values)


def _write_output(path: Path, text: str) -> Path | None:
    """Atomic write; an existing different file is kept as PATH.TIMESTAMP.bak first. Returns the backup."""
    import shutil

    from mindie_pack.config.write import atomic_write_text, backup_path
    from mindie_pack.errors import PackError

    backup = None
    try:
        if path.is_dir():
            raise PackError(f"{path}: is a directory; --output names the manifest file to write")
        if path.exists() and path.read_text(errors="replace") != text:
            backup = backup_path(path)  # never overwrites an earlier backup
            shutil.copy2(path, backup)
        atomic_write_text(path, text, mode=0o640)
    except OSError as exc:
        raise PackError(f"{path}: cannot write the manifests ({exc.strerror or exc})") from exc
    return backup


@k8s_app.command("render")
def render(
    config_path: Path = typer.Option(..., "--config", help="Rendered MindIE config.json (`mindie-pack config "
                                     "render`); its modelWeightPath is the model directory on the nodes."),
    image: str = typer.Option(..., "--image", help="MindIE container image (e.g. mindie:2.3.0-800I-A2-py311-"
                              "openeuler24.03-lts, or your ms-backend image)."),
    name: str = typer.Option("mindie", "--name", help="Name of the Kubernetes objects."),
    namespace: str | None = typer.Option(None, "--namespace", "-n"),
    npu: str = typer.Option("910B", "--npu", help="NPU type: 910A, 910B, 910C or 310P (the device-plugin resource)."),
    resource_name: str | None = typer.Option(None, "--resource-name", help="Device-plugin resource name when the "
                                             "cluster's differs (e.g. huawei.com/Ascend910B3 with HAMi)."),
    ranktable: Path | None = typer.Option(None, "--ranktable", help="Rank table of several servers: renders a "
                                          "multi-node StatefulSet (master = the first server)."),
    node_names: str | None = typer.Option(None, "--node-names", help="Kubernetes node names, comma-separated, in "
                                          "the rank table's server order (required with a multi-server table)."),
    model_pvc: str | None = typer.Option(None, "--model-pvc", help="Mount the model directory from this "
                                         "PersistentVolumeClaim instead of the node's path."),
    mindie_version: str = typer.Option("2.3.0", "--mindie-version", help="Chooses the launcher: <= 2.3 "
                                       "mindieservice_daemon, 3.x mindie_llm_server."),
    startup_window: int | None = typer.Option(None, "--startup-window", min=60, help="Seconds a pod may take to "
                                              "load the model (default: from the model size, else 1800)."),
    shm_size: str = typer.Option("1Gi", "--shm-size", help="Size of /dev/shm (MindIE needs >= 1Gi)."),
    host_ipc: bool = typer.Option(False, "--host-ipc", help="Share the host's IPC namespace."),
    service_type: str = typer.Option("ClusterIP", "--service-type", help="ClusterIP, NodePort or LoadBalancer."),
    env: list[str] = typer.Option([], "--env", help="Extra NAME=VALUE for the container (repeatable)."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write the manifests here (one YAML stream); "
                                       "default: print them."),
    apply: bool = typer.Option(False, "--apply", help="Server-side apply them to the current cluster."),
    as_json: bool = typer.Option(False, "--json", help="Print a summary as JSON."),
) -> None:
    """Render Kubernetes manifests: ConfigMap, Deployment or StatefulSets, Services, probes, device requests."""
    import yaml

    from mindie_pack.env.ranktable import rank_table_problems
    from mindie_pack.errors import PackError
    from mindie_pack.k8s.manifests import K8sOptions, render_manifests, startup_window_s

    if service_type not in ("ClusterIP", "NodePort", "LoadBalancer"):
        raise PackError(f"--service-type {service_type!r}: expected ClusterIP, NodePort or LoadBalancer")
    config = _read_json(config_path, "config.json")
    if not isinstance(config, dict):
        raise PackError(f"{config_path}: expected a JSON object")
    table = None
    if ranktable is not None:
        table = _read_json(ranktable, "rank table")
        problems = rank_table_problems(table)
        if problems:
            raise PackError(f"{ranktable}: " + problems[0] + (f" (+{len(problems) - 1} more)" if len(problems) > 1
                                                              else ""))
    nodes = [n.strip() for n in node_names.split(",") if n.strip()] if node_names else []
    options = K8sOptions(name=name, image=image, config=config, npu=npu.upper(), namespace=namespace,
                         rank_table=table, node_names=nodes, model_pvc=model_pvc, resource_name=resource_name,
                         mindie_version=mindie_version, model_bytes=_model_bytes(config),
                         startup_window_s=startup_window, shm_size=shm_size, host_ipc=host_ipc,
                         service_type=service_type, extra_env=_env_pairs(env))
    objects = render_manifests(options)
    text = yaml.safe_dump_all(objects, sort_keys=False)
    backup = None
    if output is not None:
        backup = _write_output(output, text)
    elif not as_json:
        typer.echo(text, nl=False)
    applied: list[str] = []
    if apply:
        from mindie_pack.k8s.apply import apply_objects

        applied = apply_objects(objects, namespace=namespace)
    summary = {"objects": [f"{o['kind']}/{o['metadata']['name']}" for o in objects], "output": str(output)
               if output else None, "multi_node": options.multi_node, "startup_window_s": startup_window_s(options),
               "applied": applied, "backup": str(backup) if backup else None}
    if as_json:
        typer.echo(json.dumps(summary))
    elif output is not None or apply:
        console = LazyConsole(stderr=True, highlight=False)
        console.print(f"{len(objects)} objects: {', '.join(summary['objects'])}"
                      + (f" -> {output}" if output else "") + (f" (previous file kept as {backup})" if backup else "")
                      + (" (applied)" if apply else ""), markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(k8s_app, name="k8s")
