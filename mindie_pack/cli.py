"""The `mindie-pack` command line: a thin typer app. Each command group lives in mindie_pack/commands/."""

from __future__ import annotations

import sys
from typing import Any

import typer
import typer.main

from mindie_pack import __version__
from mindie_pack.commands import COMMAND_MODULES
from mindie_pack.commands.ui import LazyConsole
from mindie_pack.errors import PackError
from mindie_pack.process_exit import leave

_APP_SETTINGS: dict[str, Any] = {
    "name": "mindie-pack",
    "help": "Hugging Face LLM folder -> running, verified MindIE service (MindSpore backend).",
    "no_args_is_help": True,
    "add_completion": False,
    "pretty_exceptions_enable": False,
    # plain click help: typer's rich help imports rich.markdown and markdown-it, which triples `--help` time
    "rich_markup_mode": None,
}
app = typer.Typer(**_APP_SETTINGS)


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


def _app_for(argv: list[str]) -> typer.Typer:
    """The app with only the command (or command group) that `argv` names, when it names one.

    Why: typer turns every registered function into a click command (signature and type-hint introspection)
    before it parses anything: ~30 ms for our 27 commands on a CI machine, an eighth of the `COMMAND --help`
    budget (issue 13). The pruned app parses, validates and helps exactly as the full one for that command;
    no command word, an unknown one or the top-level `--help` get the full app (its command list and its
    "No such command" message).
    """
    word = next((arg for arg in argv if not arg.startswith("-")), None)
    if word is None:
        return app
    commands = [info for info in app.registered_commands
                if (info.name or typer.main.get_command_name(info.callback.__name__)) == word]  # type: ignore[union-attr]
    groups = [info for info in app.registered_groups if info.name == word]
    if not commands and not groups:
        return app
    pruned = typer.Typer(**_APP_SETTINGS)
    pruned.registered_callback = app.registered_callback
    pruned.registered_commands = commands
    pruned.registered_groups = groups
    return pruned


def _click_exception_classes() -> tuple[tuple[type[BaseException], ...], tuple[type[BaseException], ...]]:
    """(ClickException classes, UsageError classes) of the click that typer uses: its vendored copy (typer >= 0.26),
    reachable only through typer.BadParameter's bases."""
    found: dict[str, list[type[BaseException]]] = {"ClickException": [], "UsageError": []}
    for cls in typer.BadParameter.__mro__:
        if cls.__name__ in found:
            found[cls.__name__].append(cls)
    return tuple(found["ClickException"]), tuple(found["UsageError"])


def usage_line(exc: BaseException) -> str:
    """A usage error as one line: what is wrong (naming the flag or argument) and where to read more."""
    message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
    ctx = getattr(exc, "ctx", None)
    path = getattr(ctx, "command_path", None) or "mindie-pack"
    return f"{message} (see `{path} --help`)"


def main(argv: list[str] | None = None) -> None:
    """The one place that maps errors to exit codes: usage errors 2, PackError its own code, Ctrl-C 130.
    As the process's entry (no `argv`), a command that loaded torch or MindSpore ends without the interpreter's
    teardown (mindie_pack/process_exit.py)."""
    if argv is not None:
        _main(argv)
        return
    try:
        _main(sys.argv[1:])
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            leave(exc.code or 0)
        raise
    leave(0)


def _main(argv: list[str]) -> None:
    err = LazyConsole(stderr=True, highlight=False, soft_wrap=True)

    def error(message: str) -> None:
        from rich.text import Text

        err.print(Text.assemble(("error: ", "bold red"), message))

    click_errors, usage_errors = _click_exception_classes()
    try:
        # Without standalone mode click returns (not raises) the code of a typer.Exit.
        code = _app_for(argv)(args=argv, prog_name="mindie-pack", standalone_mode=False)
        if isinstance(code, int) and code != 0:
            sys.exit(code)
    except PackError as exc:
        error(str(exc))
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
            error(usage_line(exc))
            sys.exit(2)
        message = " ".join(exc.format_message().split())  # type: ignore[attr-defined]
        error(message)
        sys.exit(getattr(exc, "exit_code", 1) or 1)
