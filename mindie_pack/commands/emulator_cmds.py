"""CLI commands of the emulator: `emulator install`."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from mindie_pack.commands.ui import LazyConsole
from mindie_pack.errors import PackError

emulator_app = typer.Typer(help="A MindIE stand-in for machines without NPUs.", no_args_is_help=True,
                           rich_markup_mode=None)


@emulator_app.command("install")
def install(
    prefix: Path = typer.Argument(..., help="Folder to install into (an emulated /usr/local/Ascend)."),
    mindie_version: str = typer.Option("1.0.RC3", "--mindie-version",
                                       help="1.0.x / 2.x: the mindie-service tree; 3.0.0: a venv with mindie_llm."),
    backend: str | None = typer.Option(None, "--backend", help="atb, torch (3.0) or ms (<= 2.3): the backend of the "
                                       "default config; atb also installs an atb_llm model list."),
    chip: str | None = typer.Option(None, "--chip", help="Chip name npu-smi reports (default 910B3; e.g. 310P3)."),
    npus: int = typer.Option(8, "--npus", min=1, help="Emulated NPUs reported by npu-smi."),
    fake_model: bool = typer.Option(False, "--fake-model", help="Serve deterministic tokens without weights."),
    prefill_ms: float = typer.Option(0.0, "--prefill-ms", min=0, help="Fake model: delay before the first token."),
    per_token_ms: float = typer.Option(0.0, "--per-token-ms", min=0, help="Fake model: delay per further token."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Write an emulated Ascend install (driver, CANN, MindIE with an emulated mindieservice_daemon, npu-smi)."""
    from mindie_pack.emulator.install import install_emulator
    from mindie_pack.fsutil import output_error, writing

    if backend is not None and backend not in ("atb", "torch", "ms"):
        raise PackError(f"--backend {backend!r}: expected atb, torch or ms")
    if prefix.exists() and not prefix.is_dir():
        raise output_error(prefix, NotADirectoryError(20, "Not a directory"), "cannot install the emulator")
    backups: list[str] = []
    created = not prefix.exists()
    try:
        with writing(prefix, "cannot install the emulator"):
            root = install_emulator(prefix, mindie_version=mindie_version, npu_count=npus, fake_model=fake_model,
                                    prefill_ms=prefill_ms, per_token_ms=per_token_ms, backend=backend, chip=chip,
                                    backups=backups)
    except BaseException:
        if created:  # a failed or interrupted first install leaves no partial tree (a reinstall keeps what was there)
            import shutil

            shutil.rmtree(prefix, ignore_errors=True)
        raise
    server = root.mindie_service / "bin" / "mindie_llm_server"
    if server.exists():  # MindIE >= 3.0: a Python environment
        python = root.mindie_service / "bin" / "python"
        info = {"ascend_root": str(root.root), "mindie_home": str(root.mindie_service), "mindie_python": str(python),
                "server": str(server)}
        if as_json:
            typer.echo(json.dumps(info))
            return
        console = LazyConsole(highlight=False)
        console.print(f"emulated Ascend root: {root.root}", markup=False)
        console.print(f"MindIE {mindie_version} environment (mindie_llm, mindie_llm_server): {root.mindie_service}",
                      markup=False)
        console.print(f"deploy with: mindie-pack deploy --mindie-python {python} --model-dir DIR", markup=False)
        return
    info = {"ascend_root": str(root.root), "mindie_home": str(root.mindie_service),
            "daemon": str(root.mindie_service / "bin" / "mindieservice_daemon"), "backups": backups}
    if as_json:
        typer.echo(json.dumps(info))
        return
    console = LazyConsole(highlight=False, soft_wrap=True)
    for note in backups:
        console.print(f"note: {note}", markup=False)
    console.print(f"emulated Ascend root: {root.root}", markup=False)
    console.print(f"MindIE home (mindie-service): {root.mindie_service}", markup=False)
    console.print(f"deploy with: mindie-pack deploy --mindie-home {root.mindie_service} --model-dir DIR",
                  markup=False)


def register(app: typer.Typer) -> None:
    app.add_typer(emulator_app, name="emulator")
