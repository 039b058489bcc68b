"""CLI commands of the build stage: init, build, verify, tiny-model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mindie_pack.commands.ui import LazyConsole, escape
from mindie_pack.errors import PackError, VerificationFailed
from mindie_pack.spec import DEFAULT_SPEC_NAME, load_spec, write_spec

if TYPE_CHECKING:  # the work happens in the commands: `--help` imports none of it (see benchmarks/cli_startup.py)
    from rich.progress import Progress

    from mindie_pack.builder.assemble import BuildProgress
    from mindie_pack.spec import Spec

console = LazyConsole(stderr=True, highlight=False)

# Options for inputs other than an HF folder (shared with `export`).
HF_CONFIG_HELP = "HF folder (config.json + tokenizer), or MindFormers yaml, that a MindSpore .ckpt input belongs to."
STRATEGY_HELP = "Strategy file or folder of a MindFormers training output (default: OUTPUT/strategy)."
LORA_HELP = "Hugging Face PEFT LoRA adapter folder to merge into the weights."
KEEP_HELP = "Keep tensors matching this glob that would be dropped as training state (repeatable)."
TRAIN_YAML_HELP = "MindFormers training yaml (its pet_config gives LoRA rank, alpha and targets)."


def _options_from_spec(spec: Spec) -> dict[str, Any]:
    model = spec.section("model")
    parallel = spec.section("parallel")
    return {
        "model_dir": spec.resolve(model["source"]),
        "output_dir": spec.resolve(model.get("output")) if model.get("output") else None,
        "tp": parallel.get("tp", 1),
        "dtype": model.get("dtype"),
        "profile": model.get("profile", "mf-ckpt"),
        "name": model.get("name"),
        "mindformers_src": spec.resolve(model.get("mindformers_src")),
        "vocab_emb_dp": model.get("vocab_emb_dp"),
        "seq_length": model.get("seq_length"),
        "mindie_version": model.get("mindie_version"),
    }


def _progress_bar(enabled: bool) -> tuple[Progress | None, BuildProgress]:
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from mindie_pack.builder.assemble import BuildProgress

    if not enabled:
        return None, BuildProgress()
    bar = Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        console=console.get(), transient=True,
    )
    task = bar.add_task("preparing", total=None)
    hooks = BuildProgress(
        start=lambda total: bar.update(task, total=total, completed=0),
        advance=lambda nbytes: bar.advance(task, nbytes),
        stage=lambda text: bar.update(task, description=text),
    )
    return bar, hooks


def build(
    model: Path | None = typer.Option(None, "--model",
                                      help="Hugging Face model folder, MindSpore .ckpt or MindFormers training "
                                           "output (default: from mindie-pack.yaml)."),
    output: Path | None = typer.Option(None, "--output", "-o",
                                       help="Model directory to write (MindIE modelWeightPath)."),
    tp: int | None = typer.Option(None, "--tp", min=1, help="Tensor-parallel degree = MindIE worldSize (default 1)."),
    dtype: str | None = typer.Option(None, "--dtype", help="bfloat16, float16 or float32 (default: HF torch_dtype)."),
    profile: str | None = typer.Option(None, "--profile", help="mf-ckpt (default), mf-safetensors, llm-boost, "
                                       "atb or torch (the HF folder for MindIE's atb/torch backends)."),
    name: str | None = typer.Option(None, "--name", help="Model name (default: the output folder's name)."),
    mindformers_src: Path | None = typer.Option(None, "--mindformers-src", help="MindFormers source checkout."),
    vocab_emb_dp: bool | None = typer.Option(None, "--vocab-emb-dp/--no-vocab-emb-dp",
                                             help="Replicate embedding/lm_head on every rank (default: per family)."),
    seq_length: int | None = typer.Option(None, "--seq-length", min=1, help="Static sequence length of the network."),
    crc: bool = typer.Option(False, "--crc", help="Append MindSpore's CRC trailer to each .ckpt."),
    mindie_version: str | None = typer.Option(None, "--mindie-version",
                                              help="atb/torch: the MindIE release whose rules apply (default 3.0.0)."),
    clamp: bool = typer.Option(False, "--clamp", help="Saturate values a narrowing cast would make inf "
                               "(default: refuse, naming the tensor)."),
    spec_path: Path | None = typer.Option(None, "--spec", help=f"Deployment spec (default ./{DEFAULT_SPEC_NAME})."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output (once the new one is complete)."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest summary as JSON."),
    hf_config: Path | None = typer.Option(None, "--hf-config", help=HF_CONFIG_HELP),
    strategy: Path | None = typer.Option(None, "--strategy", help=STRATEGY_HELP),
    lora: Path | None = typer.Option(None, "--lora", help=LORA_HELP),
    keep: list[str] = typer.Option([], "--keep", help=KEEP_HELP),
    train_yaml: Path | None = typer.Option(None, "--train-yaml", help=TRAIN_YAML_HELP),
) -> None:
    """Write the model directory MindIE's ms backend loads: config, yaml, tokenizer, sharded weights, manifest."""
    from mindie_pack.builder.assemble import build_model_dir
    from mindie_pack.builder.options import BuildOptions

    values: dict[str, Any] = {}
    if model is None:
        values = _options_from_spec(load_spec(spec_path))
    overrides = {"model_dir": model, "output_dir": output, "tp": tp, "dtype": dtype, "profile": profile,
                 "name": name, "mindformers_src": mindformers_src, "vocab_emb_dp": vocab_emb_dp,
                 "seq_length": seq_length, "mindie_version": mindie_version, "hf_config": hf_config,
                 "strategy": strategy, "lora": lora, "keep": tuple(keep) or None, "train_yaml": train_yaml}
    values.update({k: v for k, v in overrides.items() if v is not None})
    if values.get("output_dir") is None:
        raise PackError("--output is required (or model.output in the spec)")

    options = BuildOptions(**values, force=force, crc=crc, clamp=clamp)
    bar, hooks = _progress_bar(not as_json and console.is_terminal)
    if bar is not None:
        with bar:
            result = build_model_dir(options, hooks)
    else:
        result = build_model_dir(options, hooks)
    summary = result.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    out = LazyConsole(highlight=False)
    out.print(f"built {summary['output_dir']}  ({summary['family']}, profile {summary['profile']}, "
              f"tp {summary['tp']}, {summary['dtype']}, {summary['files']} files, {summary['bytes']:,} bytes)",
              markup=False)
    from mindie_pack.hashing import record_hash

    for weight in summary["weights"]:
        algorithm, digest = record_hash(weight) or ("hash", "?")
        out.print(f"  {weight['path']}  {weight['size']:,} bytes  {algorithm} {digest[:16]}…")


def verify(
    model_dir: Path = typer.Argument(..., help="A model directory written by `mindie-pack build`."),
    reference: Path | None = typer.Option(None, "--reference", help="HF folder: check shards equal it bit for bit."),
    run: bool = typer.Option(False, "--run", help="Also run the model on CPU and compare with the reference."),
    prompt: str | None = typer.Option(None, "--prompt", help="Prompt for --run."),
    tokens: int = typer.Option(16, "--tokens", min=1, help="Greedy tokens to compare with --run."),
    mindspore_all: bool = typer.Option(False, "--mindspore", help="Have MindSpore read every tensor (default: "
                                       "a sample of each rank; our own reader reads all of them)."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Re-hash files against the manifest, parse every rank, have MindSpore read a sample, compare with the HF
    source (independently read, cast and split) in constant memory."""
    if run and reference is None:
        raise PackError("--run needs --reference HF_DIR (the model to compare against)")
    from mindie_pack.builder.verify import verify_model_dir

    report = verify_model_dir(model_dir, reference, mindspore_full=mindspore_all)
    if run and report.ok:
        from mindie_pack.runtime.compare import DEFAULT_PROMPT, compare_with_reference

        assert reference is not None
        comparison = compare_with_reference(model_dir, reference, prompt or DEFAULT_PROMPT, tokens)
        report.add("run", comparison.ok,
                   f"max |logit diff| {comparison.max_abs_logit_diff:.3g} vs {comparison.reference_kind}; greedy "
                   f"{tokens} tokens {'agree' if comparison.ok else 'differ'}: ours {comparison.ours_text!r}, "
                   f"reference {comparison.reference_text!r}")
    if as_json:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        from rich.table import Table

        table = Table(title=escape(f"verify {model_dir}"))
        table.add_column("check")
        table.add_column("result")
        table.add_column("detail", overflow="fold")
        for check in report.checks:
            table.add_row(escape(check.name), "[green]ok[/]" if check.ok else "[red]FAIL[/]", escape(check.detail))
        LazyConsole(highlight=False).print(table)
    if not report.ok:
        failed = next(c for c in report.checks if not c.ok)
        if as_json:
            raise typer.Exit(1)
        raise VerificationFailed(f"{failed.name}: {failed.detail}")


def init(
    model: Path = typer.Option(..., "--model", help="Hugging Face model folder."),
    tp: int = typer.Option(1, "--tp", min=1, help="Tensor-parallel degree."),
    output: Path | None = typer.Option(None, "--output", help="Model directory (default ./mindie-models/<name>)."),
    name: str | None = typer.Option(None, "--name", help="Served model name (default: the HF folder's name)."),
    spec_path: Path = typer.Option(Path(DEFAULT_SPEC_NAME), "--spec", help="Where to write the spec."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing spec."),
) -> None:
    """Write a deployment spec (mindie-pack.yaml) for a Hugging Face model folder."""
    from mindie_pack.builder.hf_model import load_hf_model

    hf = load_hf_model(model)
    hf.family.plan_tp(hf.dims, tp, None)  # refuse an impossible tp now rather than at build time
    served = name or "".join(c if c.isalnum() or c in "._-" else "-" for c in model.resolve().name)
    data = {
        "version": 1,
        "model": {"source": str(model.resolve()), "name": served,
                  "output": str(output or Path("mindie-models") / served), "profile": "mf-ckpt"},
        "parallel": {"tp": tp},
    }
    write_spec(spec_path, data, force=force)
    LazyConsole(highlight=False).print(f"wrote {spec_path} ({hf.family.description}, tp {tp})", markup=False)


def tiny_model(
    output: Path = typer.Argument(..., help="Folder to write the tiny HF model into."),
    family: str = typer.Option("qwen2", "--family", help="llama, qwen2 or baichuan2."),
    dtype: str = typer.Option("bfloat16", "--dtype"),
    shards: int = typer.Option(1, "--shards", min=1, help="Number of safetensors shards."),
    force: bool = typer.Option(False, "--force", help="Replace an existing folder (it is kept as FOLDER.bak-TIME)."),
) -> None:
    """Generate a tiny random HF model with a trained byte-level BPE tokenizer (for rehearsals and tests)."""
    from mindie_pack.tiny_model import TinyModelSpec, place_tiny_model

    kv_heads = 4 if family == "baichuan2" else 2
    try:
        backup = place_tiny_model(output, TinyModelSpec(family=family, dtype=dtype, shards=shards,
                                                        num_kv_heads=kv_heads), force=force)
    except ValueError as exc:
        raise PackError(str(exc)) from None
    except OSError as exc:
        raise PackError(f"{exc.filename or output}: {exc.strerror or exc}") from None
    if backup:
        console.print(f"note: the previous {output} was moved to {backup}", markup=False)
    LazyConsole(highlight=False).print(f"wrote tiny {family} model to {output}", markup=False)


def register(app: typer.Typer) -> None:
    app.command("init")(init)
    app.command("build")(build)
    app.command("verify")(verify)
    app.command("tiny-model")(tiny_model)
