"""`mindie-pack` and every `COMMAND --help` load none of the heavy libraries: the commands import numpy, httpx,
MindSpore, the converter, starlette, jsonschema... only when they run (timings: benchmarks/cli_startup.py)."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("numpy", "httpx", "mindspore", "jsonschema", "starlette", "uvicorn", "yaml", "psutil", "docker",
         "safetensors", "tokenizers", "jinja2", "torch", "transformers", "mindie_pack.builder.convert",
         "mindie_pack.weights.dtypes", "mindie_pack.runtime", "mindie_pack.emulator.server",
         "rich.console", "pydantic", "click")  # rich: ~40 ms; pydantic: typer 0.29; click: typer vendors its own

PROBE = """
import json, sys
import typer.main
from mindie_pack.cli import app, main
loaded_by_import = [m for m in HEAVY if m in sys.modules]
paths = []
def walk(command, path):
    subcommands = getattr(command, "commands", None)
    if subcommands is None:
        paths.append(path)
        return
    paths.append(path)
    for name, sub in subcommands.items():
        walk(sub, path + [name])
walk(typer.main.get_command(app), [])
for path in paths:
    try:
        main(path + ["--help"])
    except SystemExit:
        pass
print(json.dumps({"import": loaded_by_import, "help": [m for m in HEAVY if m in sys.modules], "paths": paths}))
"""


def test_help_of_every_command_loads_no_heavy_module() -> None:
    done = subprocess.run([sys.executable, "-c", f"HEAVY = {HEAVY!r}\n" + PROBE], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["import"] == []
    assert report["help"] == []
    assert ["deploy"] in report["paths"] and ["config", "plan"] in report["paths"]
