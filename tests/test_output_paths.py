"""Every OSError on an output path is one line naming the path: a directory where the file goes, a parent that is
a file, a read-only or full file system (real mounts, in a private mount namespace), an unwritable state folder.
And `emulator install` keeps an edited conf/config.json."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import CliResult
from deploy_helpers import build_tiny

Cli = Callable[..., CliResult]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("out-paths"), tp=1)[1]


def _one_line(result: CliResult, path: Path, cause: str) -> None:
    assert result.exit_code == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert result.stderr.startswith(f"error: {path}: ") and cause in result.stderr, result.stderr


def test_render_to_a_directory(cli: Cli, model_dir: Path, tmp_path: Path) -> None:
    target = tmp_path / "config.json"
    target.mkdir()
    _one_line(cli("config", "render", "--model-dir", model_dir, "-o", target), target,
              "it is a directory where a file is expected")


def test_render_below_a_file(cli: Cli, model_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    target = tmp_path / "afile" / "config.json"
    _one_line(cli("config", "render", "--model-dir", model_dir, "-o", target), target,
              f"a parent of it is a file, not a directory ({tmp_path / 'afile'})")


def _namespace_mount(tmp_path: Path, options: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which("unshare") is None or subprocess.run(["unshare", "--mount", "true"]).returncode != 0:
        if os.environ.get("CI"):
            pytest.fail("unshare --mount is needed (run the tests as root)")
        pytest.skip("cannot create a mount namespace here (needs root)")
    mount = tmp_path / "mnt"
    mount.mkdir()
    fill = f"(cat /dev/zero > {mount}/fill 2>/dev/null; true) &&" if "size=" in options else ""
    command = " ".join([f"mount -t tmpfs -o {options} tmpfs {mount} &&", fill, sys.executable, "-m", "mindie_pack",
                        *args])
    return subprocess.run(["unshare", "--mount", "sh", "-c", command.replace("MNT", str(mount))],
                          capture_output=True, text=True, timeout=300)


def test_render_on_a_read_only_file_system(model_dir: Path, tmp_path: Path) -> None:
    done = _namespace_mount(tmp_path, "ro", ["config", "render", "--model-dir", str(model_dir), "-o",
                                             "MNT/config.json"])
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip() == f"error: {tmp_path / 'mnt' / 'config.json'}: cannot write: read-only file system " \
                                  f"({tmp_path / 'mnt'})"


def test_render_on_a_full_file_system(model_dir: Path, tmp_path: Path) -> None:
    # a small tmpfs filled up: the check before rendering passes, the write itself runs out of space
    done = _namespace_mount(tmp_path, "size=64k", ["config", "render", "--model-dir", str(model_dir), "-o",
                                                  "MNT/config.json"])
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: {tmp_path / 'mnt' / 'config.json'}: cannot write: no space left")
    assert len(done.stderr.strip().splitlines()) == 1


def test_emulator_install_into_a_file(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "afile"
    target.write_text("x")
    _one_line(cli("emulator", "install", target), target, "a parent of it is a file")


def test_state_folder_below_a_file(cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "afile").write_text("x")
    monkeypatch.setenv("MINDIE_PACK_STATE_DIR", str(tmp_path / "afile" / "state"))
    _one_line(cli("stop"), tmp_path / "afile" / "state", "cannot create the folder")


def test_emulator_install_keeps_an_edited_config(cli: Cli, tmp_path: Path) -> None:
    first = cli("emulator", "install", tmp_path / "Ascend", "--json")
    assert first.exit_code == 0, first.stderr
    config = Path(json.loads(first.stdout)["mindie_home"]) / "conf" / "config.json"
    edited = json.loads(config.read_text())
    edited["ServerConfig"]["port"] = 4242
    config.write_text(json.dumps(edited))
    second = cli("emulator", "install", tmp_path / "Ascend")
    assert second.exit_code == 0, second.stderr
    assert f"note: {config} differed from the default: kept as {config}." in second.stdout
    backups = list(config.parent.glob("config.json.*.bak"))
    assert len(backups) == 1 and json.loads(backups[0].read_text())["ServerConfig"]["port"] == 4242
    assert json.loads(config.read_text())["ServerConfig"]["port"] != 4242
    third = cli("emulator", "install", tmp_path / "Ascend", "--json")  # unchanged default: no new backup
    assert json.loads(third.stdout)["backups"] == [] and len(list(config.parent.glob("config.json.*.bak"))) == 1


def test_a_failed_first_emulator_install_leaves_no_partial_tree(tmp_path: Path) -> None:
    # a full file system: the install fails part-way; what it had created is removed, and one line says why
    done = _namespace_mount(tmp_path, "size=64k", ["emulator", "install", "MNT/Ascend", ";", "echo", "LEFT:",
                                                  "$(ls -A MNT)"])
    assert "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith(f"error: {tmp_path / 'mnt' / 'Ascend'}: cannot install the emulator: "), done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert done.stdout.strip().splitlines()[-1] == "LEFT: fill"  # only the test's own filler file
