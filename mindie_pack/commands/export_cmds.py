"""`mindie-pack export SRC --to hf --output OUT`: a built model directory or a MindSpore checkpoint back to HF."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mindie_pack.commands.build_cmds import (
    HF_CONFIG_HELP,
    KEEP_HELP,
    LORA_HELP,
    STRATEGY_HELP,
    TRAIN_YAML_HELP,
    _progress_bar,
)
from mindie_pack.commands.ui import LazyConsole
from mindie_pack.errors import PackError

console = LazyConsole(stderr=True, highlight=False)


def export(
    source: Path = typer.Argument(..., help="Built model directory, MindSpore .ckpt, MindFormers training output, "
                                            "or HF folder (with --lora)."),
    to: str = typer.Option("hf", "--to", help="Target format (hf: a Hugging Face folder)."),
    output: Path = typer.Option(..., "--output", "-o", help="Folder to write."),
    dtype: str | None = typer.Option(None, "--dtype", help="bfloat16, float16 or float32 (default: as stored)."),
    hf_config: Path | None = typer.Option(None, "--hf-config", help=HF_CONFIG_HELP),
    strategy: Path | None = typer.Option(None, "--strategy", help=STRATEGY_HELP),
    lora: Path | None = typer.Option(None, "--lora", help=LORA_HELP),
    keep: list[str] = typer.Option([], "--keep", help=KEEP_HELP),
    train_yaml: Path | None = typer.Option(None, "--train-yaml", help=TRAIN_YAML_HELP),
    shard_size: int = typer.Option(5 * 1024**3, "--shard-bytes", min=1, help="Largest safetensors shard in bytes."),
    force: bool = typer.Option(False, "--force", help="Replace an existing output (once the new one is complete)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Write a Hugging Face folder (safetensors + index, config, tokenizer, generation_config) transformers loads."""
    from mindie_pack.builder.inputs import InputOptions  # the work's imports: not loaded for --help
    from mindie_pack.export.hf import export_hf

    if to != "hf":
        raise PackError(f"--to {to!r}: only 'hf' is supported")
    inputs = InputOptions(source, hf_config, strategy, lora, tuple(keep), train_yaml)
    bar, hooks = _progress_bar(not as_json and console.is_terminal)
    if bar is not None:
        with bar:
            result = export_hf(source, output, inputs=inputs, dtype=dtype, force=force, shard_bytes=shard_size,
                               progress=hooks)
    else:
        result = export_hf(source, output, inputs=inputs, dtype=dtype, force=force, shard_bytes=shard_size)
    summary = result.summary()
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
        return
    for note in result.notes:
        console.print(f"note: {note}")
    out = LazyConsole(highlight=False)
    total = sum(f["size"] for f in result.files)
    out.print(f"exported {result.output_dir}  (from {result.source_kind}, {result.tensors} tensors, {result.dtype}, "
              f"{len(result.files)} safetensors file(s), {total:,} bytes)")


def register(app: typer.Typer) -> None:
    app.command("export")(export)
