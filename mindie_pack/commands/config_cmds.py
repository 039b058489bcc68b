"""CLI commands of the config stage: `config render|validate|plan|diff|explain`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mindie_pack.commands.bounds import positive
from mindie_pack.commands.ui import LazyConsole, escape
from mindie_pack.errors import PackError
from mindie_pack.spec import DEFAULT_SPEC_NAME, load_spec

config_app = typer.Typer(help="Render, validate and plan MindIE's conf/config.json.", no_args_is_help=True,
                         rich_markup_mode=None)
out = LazyConsole(highlight=False, soft_wrap=True)


@config_app.command("render")
def render(
    output: Path = typer.Option(..., "--output", "-o", help="Where to write config.json."),
    spec_path: Path | None = typer.Option(None, "--spec", help=f"Deployment spec (default ./{DEFAULT_SPEC_NAME} "
                                          "when present)."),
    model_dir: Path | None = typer.Option(None, "--model-dir", help="Built model directory (modelWeightPath)."),
    mindie_version: str | None = typer.Option(None, "--mindie-version", help="e.g. 1.0.RC3, 2.0.RC1, 2.3.0, 3.0.0."),
    backend: str | None = typer.Option(None, "--backend", help="backendType: ms, atb or torch (default: the model "
                                       "directory's build profile, else ms up to 2.3 and atb on 3.0)."),
    sets: list[str] = typer.Option([], "--set", help="KEY=VALUE on the rendered JSON (repeatable)."),
    patch: Path | None = typer.Option(None, "--patch", help="JSON merge patch applied after rendering."),
    as_json: bool = typer.Option(False, "--json", help="Print what was written as JSON."),
) -> None:
    """Write config.json from the version's template, the spec and the model directory (validated first)."""
    from mindie_pack.config import line_for, render_config, write_config
    from mindie_pack.config.versions import DEFAULT_MINDIE_VERSION
    from mindie_pack.fsutil import check_parent_writable, writing

    check_parent_writable(output)  # before any work: a directory there, a parent that is a file
    spec = load_spec(spec_path) if spec_path or Path(DEFAULT_SPEC_NAME).is_file() else None
    patch_data = _read_patch(patch) if patch else None
    version = mindie_version or (spec.section("server").get("mindie_version") if spec else None) \
        or DEFAULT_MINDIE_VERSION
    config = render_config(spec, model_dir=model_dir, mindie_version=version, sets=sets, patch=patch_data,
                           backend=backend)
    with writing(output):
        result = write_config(config, output, version=version)
    model = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]
    summary = {"path": str(result.path), "backup": str(result.backup) if result.backup else None,
               "diff": str(result.diff_path), "mindie_version": version, "line": line_for(version),
               "backendType": model["backendType"]}
    if as_json:
        typer.echo(json.dumps(summary))
        return
    out.print(f"wrote {result.path} (MindIE {version}, backendType {model['backendType']}, mode 0640)", markup=False)
    if result.backup:
        out.print(f"  previous file kept as {result.backup}", markup=False)
    out.print(f"  changes versus the default config: {result.diff_path}", markup=False)


def _read_patch(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PackError(f"--patch {path}: file not found") from None
    except json.JSONDecodeError as exc:
        raise PackError(f"--patch {path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise PackError(f"--patch {path}: expected a JSON object (a merge patch)")
    return data


@config_app.command("validate")
def validate(
    path: Path = typer.Argument(..., help="config.json to check."),
    mindie_version: str | None = typer.Option(None, "--mindie-version", help="Judge by this release's rules "
                                              "(default: the install's version file, else the file's shape)."),
    mindie_home: Path | None = typer.Option(None, "--mindie-home", help="MindIE install: its version file decides "
                                            "the release."),
    install_dir: Path | None = typer.Option(None, "--install-dir", help="mindie-service folder (for TLS files)."),
    skip_model_dir: bool = typer.Option(False, "--skip-model-dir", help="Do not check modelWeightPath."),
    npu: str | None = typer.Option(None, "--npu", help="NPU type for the capacity check (default 910B)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Check a config.json as the daemon of its release would: exit 0 valid (warnings allowed), 1 invalid."""
    from mindie_pack.config.detect import installed_version
    from mindie_pack.config.problems import Problem, unique
    from mindie_pack.config.releases import release_for
    from mindie_pack.config.validate import validate_report

    if mindie_home is not None and not mindie_home.exists():
        raise PackError(f"--mindie-home {mindie_home}: no such directory")
    version_found, why = installed_version(mindie_home)
    if mindie_home is not None and version_found is None:
        raise PackError(f"--mindie-home {mindie_home}: no MindIE install with a version file found there")
    report = validate_report(path, version=mindie_version, check_model_dir=not skip_model_dir,
                             install_dir=install_dir, install_version=version_found, install_reason=why)
    problems = list(report.problems)
    if mindie_version and version_found and release_for(mindie_version) != release_for(version_found):
        problems.insert(0, Problem("--mindie-version", f"{mindie_version} set aside: the install says {version_found} "
                                   f"({why}), and its rules apply", "warning"))
    data = report.data
    plan = _plan_from_config(data, npu) if isinstance(data, dict) and not skip_model_dir else None
    if plan is not None:
        problems += [Problem("capacity", m) for m in plan.errors]
        problems += [Problem("capacity", m, "warning") for m in plan.warnings]
    problems = unique(problems)
    invalid = any(p.severity == "error" for p in problems)
    judgement = report.judgement
    rules = judgement.to_dict() if judgement else None
    line = sorted({r.layout for r in judgement.releases})[0] if judgement else None
    if as_json:
        typer.echo(json.dumps({"path": str(path), "valid": not invalid, "version_line": line, "rules": rules,
                               "problems": [p.to_dict() for p in problems],
                               "capacity": plan.to_dict() if plan else None}, indent=2))
    else:
        for problem in problems:
            prefix = "" if problem.severity == "error" else "warning: "
            out.print(f"{prefix}{problem}", markup=False)
        verdict = "INVALID" if invalid else "valid"
        if judgement is None:
            out.print(f"{path}: {verdict}", markup=False)
        else:
            out.print(f"{path}: {verdict} (MindIE {judgement.name} rules; {judgement.reason})", markup=False)
    if invalid:
        raise typer.Exit(1)


def _plan_from_config(data: dict[str, Any], npu: str | None) -> Any:
    from mindie_pack.config import plan_capacity

    try:
        backend = data["BackendConfig"]
        model = backend["ModelDeployConfig"]["ModelConfig"][0]
        model_dir = Path(model["modelWeightPath"])
        if not (model_dir / "config.json").is_file() or int(model["npuMemSize"]) <= 0:
            return None
        return plan_capacity(model_dir, npu=npu, world_size=int(model["worldSize"]),
                             npu_mem_size_gb=int(model["npuMemSize"]),
                             block_size=int(backend["ScheduleConfig"]["cacheBlockSize"]),
                             max_seq_len=int(backend["ModelDeployConfig"]["maxSeqLen"]),
                             max_batch_size=int(backend["ScheduleConfig"]["maxBatchSize"]))
    except (KeyError, IndexError, TypeError, ValueError, PackError):
        return None


@config_app.command("plan")
def plan(
    model: Path = typer.Argument(..., help="Model directory or HF folder (its config.json), or a config.json."),
    npu: str | None = typer.Option(None, "--npu", help="910B (default), 910B4, 910A or 310P."),
    hbm_gb: float | None = typer.Option(None, "--hbm-gb", callback=positive,
                                        help="HBM per NPU in GB (instead of --npu)."),
    world_size: int = typer.Option(1, "--world-size", min=1),
    npu_mem_size: int = typer.Option(8, "--npu-mem-size", min=1, help="npuMemSize in GB (KV cache per NPU)."),
    block_size: int = typer.Option(128, "--block-size", min=1),
    max_seq_len: int = typer.Option(2560, "--max-seq-len", min=1),
    max_batch_size: int = typer.Option(200, "--max-batch-size", min=1),
    dtype: str | None = typer.Option(None, "--dtype", help="KV/weight dtype (default: torch_dtype)."),
    vocab_emb_dp: bool | None = typer.Option(None, "--vocab-emb-dp/--no-vocab-emb-dp",
                                             help="As given to build (default: the family's, Llama replicates)."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Weights and KV cache per NPU, KV blocks for npuMemSize, and whether it all fits in HBM."""
    from rich.table import Table

    from mindie_pack.config import plan_capacity

    result = plan_capacity(model, npu=npu, hbm_gb=hbm_gb, world_size=world_size, npu_mem_size_gb=npu_mem_size,
                           block_size=block_size, max_seq_len=max_seq_len, max_batch_size=max_batch_size,
                           dtype=dtype, vocab_emb_dp=vocab_emb_dp)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
    else:
        table = Table(title=escape(f"capacity plan: {model} on {world_size} NPU(s) of {result.hbm_gb:g} GB"))
        table.add_column("item")
        table.add_column("value", justify="right")
        for label, value in (
            ("weights per NPU", f"{result.weights_gb_per_rank:.2f} GiB"),
            ("KV cache per token per NPU", f"{result.kv_bytes_per_token_per_rank:,.0f} bytes"),
            ("npuMemSize", f"{result.npu_mem_size_gb} GiB"),
            (f"KV blocks of {result.block_size}", f"{result.kv_blocks:,}"),
            ("tokens that fit", f"{result.kv_tokens:,}"),
            ("fits in HBM (with reserve)", f"{'yes' if result.fits_in_hbm else 'NO'} ({result.reserve_gb:g} GiB "
                                           "reserve)"),
            ("suggested npuMemSize", f"{result.suggested_npu_mem_size_gb} GiB"),
            ("smallest worldSize that fits", str(result.smallest_world_size)),
        ):
            table.add_row(label, value)
        out.print(table)
        for message in result.errors:
            out.print(f"[red]error[/]: {escape(message)}")
        for message in result.warnings:
            out.print(f"[yellow]warning[/]: {escape(message)}")
    if result.errors:
        raise typer.Exit(1)


@config_app.command("diff")
def diff(a: Path = typer.Argument(...), b: Path = typer.Argument(...)) -> None:
    """Field-by-field differences between two config.json files (exit 1 when they differ)."""
    from mindie_pack.config.validate import load_config_file
    from mindie_pack.config.write import diff_lines

    data = []
    for path in (a, b):
        loaded, problems = load_config_file(path)
        if problems:
            raise PackError(str(problems[0]))
        data.append(loaded)
    lines = diff_lines(data[0], data[1])
    for line in lines:
        out.print(line, markup=False)
    if lines:
        raise typer.Exit(1)


@config_app.command("explain")
def explain(
    field_name: str = typer.Argument(..., metavar="FIELD", help="e.g. npuMemSize or ServerConfig.port."),
    mindie_version: str = typer.Option("2.3.0", "--mindie-version", help="A release (1.0.RC3 ... 3.0.0) or a layout "
                                       "(1.0, 2.x, 3.0)."),
) -> None:
    """What a config.json field means, its type, range and default."""
    from mindie_pack.config import line_for
    from mindie_pack.config.compulsory import COMPULSORY
    from mindie_pack.config.schema import field_schema

    node = field_schema(line_for(mindie_version), field_name)
    if node is None:
        raise PackError(f"{field_name}: no such field in the MindIE {line_for(mindie_version)} config")

    out.print(f"{field_name}: {node.get('description', '')}", markup=False)
    facts = [f"{k}: {json.dumps(node[k])}" for k in ("type", "enum", "minimum", "maximum", "pattern", "maxLength",
                                                      "default") if k in node]
    facts += [f"source: {node['$comment']}"] if node.get("$comment") else []
    facts += [f"compulsory: from MindIE {row.since} ({row.source})" for row in COMPULSORY
              if row.key == field_name.split(".")[-1] and line_for(mindie_version) in row.layouts]
    for fact in facts:
        out.print(f"  {fact}", markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
