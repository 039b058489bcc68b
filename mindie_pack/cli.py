"""The `mindie-pack` command line: a thin typer app. Each command group lives in mindie_pack/commands/."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.text import Text

from mindie_pack import __version__
from mindie_pack.commands import COMMAND_MODULES
from mindie_pack.errors import PackError

app = typer.Typer(
    name="mindie-pack",
    help="Hugging Face LLM folder -> running, verified MindIE service (MindSpore backend).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # plain click help: typer's rich help imports rich.markdown and markdown-it, which triples `--help` time
    rich_markup_mode=None,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"mindie-pack {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version_callback, is_eager=True,
                                 help="Print the version and exit."),
) -> None:
    """Build, configure, deploy and check MindIE services."""


for _module in COMMAND_MODULES:
    _module.register(app)


def _click_exception_classes() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(ClickException classes, UsageError classes) of the click that typer uses: its vendored copy (typer >= 0.29,
    reachable only through typer.BadParameter's bases) and the standalone click package (older typer)."""
    found: dict[str, list[type[BaseException]]] = {"ClickException": [], "UsageError": []}
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ in found:
            found[cls.__name__].append(cls)
    try:
        import click

        found["ClickException"].append(click.ClickException)
        found["UsageError"].append(click.UsageError)
    except ImportError:  # pragma: no cover - typer >= 0.29 does not need it
        pass
    return tuple(found["ClickException"]), tuple(found["UsageError"])


def usage_line(exc: BaseException) -> str:
    """A usage error as one line: what is wrong (naming the flag or argument) and where to read more."""
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "mindie-pack"
    return f"{message} (see `{path} --help`)"


def main(argv: list[str] | None = None) -> None:
    """The one place that maps errors to exit codes: usage errors 2, PackError its own code, Ctrl-C 130."""
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    click_errors, usage_errors = _click_exception_classes()
    try:
        # Without standalone mode click returns (not raises) the code of a typer.Exit.
        code = app(args=argv, prog_name="mindie-pack", standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except PackError as exc:
        err.print(Text.assemble(("error: ", "bold red"), str(exc)))
        sys.exit(exc.exit_code)
    except typer.Exit as exc:
        sys.exit(exc.exit_code)
    except typer.Abort:
        err.print("aborted")
        sys.exit(130)
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)
    except click_errors as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # `mindie-pack config`: the group's help, on stderr
            exc.show()  # type: ignore[attr-defined]
            sys.exit(2)
        if isinstance(exc, usage_errors):
            err.print(Text.assemble(("error: ", "bold red"), usage_line(exc)))
            sys.exit(2)
        message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
        err.print(Text.assemble(("error: ", "bold red"), message))
        sys.exit(getattr(exc, "exit_code", 1) or 1)
