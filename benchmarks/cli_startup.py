"""How long `mindie-pack --help` and `mindie-pack COMMAND --help` take, against `python -c pass` and against
importing typer (and the pydantic-based coercion typer 0.29 loads for any subcommand: the floor any typer CLI
pays), in the same run on the same machine.

    python benchmarks/cli_startup.py [--repeat 7]

Prints, per command, the best and the median wall time of `repeat` runs (the best is the least disturbed by
other load), and which heavy modules `import mindie_pack.cli` pulls in (none is the goal: the commands import
numpy, httpx, MindSpore, the converter, starlette, jsonschema... only when they run).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

HEAVY = ("numpy", "httpx", "mindspore", "jsonschema", "starlette", "uvicorn", "yaml", "psutil", "docker",
         "safetensors", "tokenizers", "jinja2", "mindie_pack.builder.convert", "mindie_pack.weights")
TARGET_S = 0.25


def timed(argv: list[str], repeat: int) -> tuple[float, float]:
    runs = []
    for _ in range(repeat):
        start = time.perf_counter()
        subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
        runs.append(time.perf_counter() - start)
    return min(runs), statistics.median(runs)


def command_paths() -> list[list[str]]:
    import typer.main

    from mindie_pack.cli import app

    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands is None:
            paths.append(path)
            return
        if path:
            paths.append(path)  # the group's own --help
        for name, sub in subcommands.items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    py = sys.executable
    loaded = subprocess.run([py, "-c", "import sys, mindie_pack.cli; print(' '.join(m for m in "
                             f"{HEAVY!r} if m in sys.modules))"], capture_output=True, text=True).stdout.strip()
    rows = [("python -c pass", *timed([py, "-c", "pass"], args.repeat)),
            ("python -c 'import typer'", *timed([py, "-c", "import typer"], args.repeat)),
            # typer >= 0.29 coerces every option (even a subcommand's unused --help) through pydantic: the floor
            # of any typer 0.29 command's --help
            ("python -c 'import typer, typer._adapters'", *timed([py, "-c", "import typer, typer._adapters"],
                                                                args.repeat)),
            ("python -c 'import mindie_pack.cli'", *timed([py, "-c", "import mindie_pack.cli"], args.repeat))]
    for path in [[], *command_paths()]:
        rows.append((" ".join(["mindie-pack", *path, "--help"]),
                     *timed([py, "-m", "mindie_pack", *path, "--help"], args.repeat)))
    width = max(len(r[0]) for r in rows)
    print(f"{'command':<{width}}  {'best s':>7}  {'median s':>8}  {'best - python':>13}")
    base = rows[0][1]
    for label, best, median in rows:
        print(f"{label:<{width}}  {best:7.3f}  {median:8.3f}  {best - base:13.3f}")
    helps = [r for r in rows if r[0].endswith("--help")]
    slowest = max(helps, key=lambda r: r[1])
    print(f"\nslowest --help: {slowest[0]} {slowest[1]:.3f} s best (target {TARGET_S} s); "
          f"heavy modules imported by mindie_pack.cli: {loaded or 'none'}")


if __name__ == "__main__":
    main()
