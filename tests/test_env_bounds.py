"""env/doctor/ranktable refuse what they cannot use, naming the flag: a --mindie-home or --ascend-root that is not
there (it used to be ignored silently), device lists with repeats or non-numbers, ports that are not ports."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mindie_pack.emulator.install import install_emulator

from conftest import CliResult

Cli = Callable[..., CliResult]


def test_env_refuses_a_missing_mindie_home(cli: Cli, tmp_path: Path) -> None:
    result = cli("env", "--mindie-home", tmp_path / "nope")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: --mindie-home {tmp_path / 'nope'}: no such directory"


def test_env_refuses_a_folder_without_the_daemon(cli: Cli, tmp_path: Path) -> None:
    result = cli("env", "--mindie-home", tmp_path)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --mindie-home {tmp_path}: no bin/mindieservice_daemon there")


def test_given_mindie_home_is_never_replaced_by_another_install(cli: Cli, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    installed = install_emulator(tmp_path / "Ascend")
    monkeypatch.setenv("MIES_INSTALL_PATH", str(installed.mindie_service))  # a valid install elsewhere
    result = cli("doctor", "--mindie-home", tmp_path / "typo", "--json")
    assert result.exit_code == 2
    assert "--mindie-home" in result.stderr and "typo" in result.stderr
    ok = cli("env", "--mindie-home", installed.mindie_service, "--json")
    assert ok.exit_code == 0, ok.stderr


def test_env_refuses_a_missing_ascend_root(cli: Cli, tmp_path: Path) -> None:
    result = cli("env", "--ascend-root", tmp_path / "nope")
    assert result.exit_code == 2 and "--ascend-root" in result.stderr


@pytest.mark.parametrize("devices, words", [
    ("0,0", "NPU 0 is listed more than once"), ("0,,1", "an id is empty"), ("x", "'x' is not an NPU id"),
    ("-1", "'-1' is not an NPU id"), ("", "an id is empty"),
])
def test_env_device_lists(cli: Cli, devices: str, words: str) -> None:
    result = cli("env", "--devices", devices)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: --devices {devices!r}: ") and words in result.stderr


@pytest.mark.parametrize("ports", ["abc", "-1", "70000", "1025,,1026"])
def test_doctor_ports(cli: Cli, ports: str) -> None:
    result = cli("doctor", "--ports", ports)
    assert result.exit_code == 2 and result.stderr.startswith(f"error: --ports {ports!r}")


def test_env_refuses_devices_the_host_does_not_have(cli: Cli, tmp_path: Path) -> None:
    installed = install_emulator(tmp_path / "Ascend", npu_count=4)
    result = cli("env", "--ascend-root", installed.root, "--devices", "2,7")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --devices 2,7: this host has no NPU 7 (npu-smi lists 0,1,2,3)"
    ok = cli("env", "--ascend-root", installed.root, "--devices", "2,3", "--json")
    assert ok.exit_code == 0, ok.stderr
    assert '"ASCEND_RT_VISIBLE_DEVICES": "2,3"' in ok.stdout
