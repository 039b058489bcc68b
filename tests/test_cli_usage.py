"""Every command and subcommand, found by walking the CLI's command tree (so commands added later are covered):
a bad option or a bad value is a usage error: exit 2, one line naming the flag, no traceback."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import typer.main

from mindie_pack.cli import app

from conftest import CliResult

Cli = Callable[..., CliResult]

# options where a negative number is meaningful (none today); every other numeric option must refuse -5
NEGATIVE_ALLOWED: set[tuple[str, str]] = set()


def _leaves(command: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    subcommands = getattr(command, "commands", None)
    if subcommands is not None:
        for name, sub in subcommands.items():
            yield from _leaves(sub, (*path, name))
    else:
        yield path, command


def _value_options(command: Any) -> list[Any]:
    return [p for p in command.params if p.param_type_name == "option" and not p.is_flag and not p.hidden]


LEAVES = list(_leaves(typer.main.get_command(app)))
COMMANDS = [pytest.param(path, id=" ".join(path)) for path, _ in LEAVES]
OPTIONS = [pytest.param(path, option, id=f"{' '.join(path)} {option.opts[0]}")
           for path, command in LEAVES for option in _value_options(command)]
# click's names for its number types (typer maps int/float annotations, with or without min/max, onto them)
NUMBER_TYPES = {"int", "float", "int range", "float range"}
NUMERIC = [param for param in OPTIONS if param.values[1].type.name in NUMBER_TYPES]


def _assert_usage_error(result: CliResult, flag_names: list[str]) -> None:
    output = result.stdout + result.stderr
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert any(name in lines[0] for name in flag_names), lines[0]


def test_the_walk_finds_every_command() -> None:
    names = {" ".join(path) for path, _ in LEAVES}
    assert {"build", "deploy", "stop", "bench", "config render", "config plan", "emulator install"} <= names
    assert len(OPTIONS) > 50 and len(NUMERIC) > 20


@pytest.mark.parametrize("path", COMMANDS)
def test_unknown_option(cli: Cli, path: tuple[str, ...]) -> None:
    _assert_usage_error(cli(*path, "--no-such-flag-xyz"), ["--no-such-flag-xyz"])


@pytest.mark.parametrize("path, option", OPTIONS)
def test_bad_value(cli: Cli, path: tuple[str, ...], option: Any) -> None:
    if option.type.name in NUMBER_TYPES:
        args = [option.opts[0], "not-a-number"]
    elif option.type.name == "choice":
        args = [option.opts[0], "no-such-choice"]
    else:  # free text or a path: the value itself is missing
        args = [option.opts[0]]
    _assert_usage_error(cli(*path, *args), option.opts)


@pytest.mark.parametrize("path, option", NUMERIC)
def test_negative_numbers_are_refused(cli: Cli, path: tuple[str, ...], option: Any) -> None:
    if (" ".join(path), option.opts[0]) in NEGATIVE_ALLOWED:
        pytest.skip("a negative value is meaningful here")
    _assert_usage_error(cli(*path, option.opts[0], "-5"), option.opts)


@pytest.mark.parametrize("args, flag", [
    (["bench", "--duration", "0"], "--duration"), (["bench", "--rate", "0"], "--rate"),
    (["bench", "--rate", "-1"], "--rate"), (["bench", "--input-len", "-5"], "--input-len"),
    (["config", "plan", "x", "--npu-mem-size", "-3"], "--npu-mem-size"), (["doctor", "--world-size", "-1"],
                                                                           "--world-size"),
    (["build", "--seq-length", "-5"], "--seq-length"), (["bench", "--concurrency", "0"], "--concurrency"),
    (["build", "--tp", "abc"], "--tp"), (["config", "plan", "x", "--hbm-gb", "nan"], "--hbm-gb"),
])
def test_the_reported_cases(cli: Cli, args: list[str], flag: str) -> None:
    _assert_usage_error(cli(*args), [flag])


def test_group_without_subcommand_shows_help_and_exits_2(cli: Cli) -> None:
    result = cli("config")
    assert result.exit_code == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert "render" in result.stdout + result.stderr


def test_unknown_command(cli: Cli) -> None:
    result = cli("no-such-command")
    assert result.exit_code == 2 and "no-such-command" in result.stderr and "Traceback" not in result.stderr


def test_brackets_in_messages_are_printed_as_written(cli: Cli) -> None:
    # rich markup would eat `[a-zA-Z0-9_.-]` and print the pattern without its character classes
    shown = cli("config", "explain", "modelName")
    assert shown.exit_code == 0
    assert 'pattern: "^[a-zA-Z0-9]([a-zA-Z0-9_.-]{0,254}[a-zA-Z0-9])?$"' in shown.stdout
    refused = cli("config", "explain", "no[bold]such[/bold]")
    assert refused.exit_code == 2
    assert refused.stderr.strip() == "error: no[bold]such[/bold]: no such field in the MindIE 2.x config"


def test_multi_line_diagnostics_stay_whole(cli: Cli, monkeypatch: pytest.MonkeyPatch) -> None:
    from mindie_pack.errors import PackError

    message = "deploy failed: the daemon exited with code 1; log /x/daemon.log\n  last log lines:\n    [ERROR] a [b]"
    error = PackError("deploy failed: the daemon exited with code 1;\n log /x/daemon.log",
                      details=["  last log lines:", "    [ERROR] a [b]"])
    assert str(error) == message  # the message folded to one line, the details whole
    assert str(PackError("a\n  b")) == "a b"

    def fail(*_: object, **__: object) -> None:
        raise error

    monkeypatch.setattr("mindie_pack.deploy.status.status", fail)
    result = cli("status")
    assert result.exit_code == 2
    assert result.stderr == "error: " + message + "\n"
