"""CLI commands of the runtime stage: `run` (generate on CPU from a built model directory or an HF folder)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

from mindie_pack.runtime.api import GenerationParams


def run(
    model_dir: Path = typer.Argument(..., help="A model directory written by `mindie-pack build`, or a Hugging "
                                     "Face folder (config.json + *.safetensors, as atb/torch serve it)."),
    prompt: str = typer.Argument(..., help="Prompt text."),
    max_new_tokens: int = typer.Option(32, "--max-new-tokens", "-n", min=1),
    temperature: float = typer.Option(0.0, "--temperature", help="0 = greedy."),
    top_k: int = typer.Option(0, "--top-k"),
    top_p: float = typer.Option(1.0, "--top-p"),
    seed: int | None = typer.Option(None, "--seed"),
    repetition_penalty: float = typer.Option(1.0, "--repetition-penalty"),
    stop: list[str] = typer.Option([], "--stop", help="Stop string (repeatable)."),
    chat: bool = typer.Option(False, "--chat", help="Wrap the prompt in the model's chat template."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON instead of streaming text."),
    tp: int | None = typer.Option(None, "--tp", min=1,
                                  help="Tensor-parallel ranks for an HF folder (a built directory has its own)."),
) -> None:
    """Generate text on CPU (tensor-parallel ranks computed in turn) from a built directory or an HF folder."""
    from mindie_pack.runtime import open_model  # imports numpy and the weight readers: only when this command runs

    runtime = open_model(model_dir, tp=tp)
    text = runtime.apply_chat_template([{"role": "user", "content": prompt}]) if chat else prompt
    params = GenerationParams(
        max_new_tokens=max_new_tokens, do_sample=temperature > 0, temperature=temperature or 1.0, top_k=top_k,
        top_p=top_p, seed=seed, repetition_penalty=repetition_penalty, stop=tuple(stop),
    )

    def stream(_: int, __: int, piece: str) -> None:
        sys.stdout.write(piece)
        sys.stdout.flush()

    result = runtime.generate([runtime.encode(text)], params, None if as_json else stream)[0]
    if as_json:
        typer.echo(json.dumps({"prompt": text, "text": result.text, "token_ids": result.token_ids,
                               "prompt_tokens": len(result.prompt_token_ids),
                               "generated_tokens": len(result.token_ids), "finish_reason": result.finish_reason}))
    else:
        sys.stdout.write("\n")


def register(app: typer.Typer) -> None:
    app.command("run")(run)
