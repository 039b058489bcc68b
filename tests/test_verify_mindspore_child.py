"""verify's MindSpore check runs in a child process: its verdict comes back as the check, a crash of the child
is a failed check naming what it printed, and a verify that stops early kills the child it started."""

from __future__ import annotations

import os
import stat
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mindie_pack.builder import mindspore_check
from mindie_pack.builder.mindspore_check import MindSporeCheck


def _fake_python(tmp_path: Path, body: str) -> str:
    script = tmp_path / "python"
    script.write_text("#!/bin/sh\n" + body + "\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return str(script)


def test_a_crashed_child_is_a_failed_check_with_its_last_words(tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mindspore_check.sys, "executable",
                        _fake_python(tmp_path, "echo 'Segmentation fault in libmindspore' >&2; exit 139"))
    result = MindSporeCheck(tmp_path).result()
    assert (result.name, result.ok) == ("mindspore", False)
    assert result.detail == "the MindSpore check exited with code 139: Segmentation fault in libmindspore"


def test_cancel_kills_the_child_it_started(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pid_file = tmp_path / "pid"
    monkeypatch.setattr(mindspore_check.sys, "executable",
                        _fake_python(tmp_path, f"echo $$ > {pid_file}; exec sleep 300"))
    with MindSporeCheck(tmp_path):
        deadline = time.monotonic() + 30
        while not pid_file.exists() or not pid_file.read_text().strip():
            assert time.monotonic() < deadline
            time.sleep(0.05)
        pid = int(pid_file.read_text())
        os.kill(pid, 0)  # running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped when the with block ended


def test_the_child_reports_a_real_check(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    from mindie_pack.builder.assemble import build_model_dir
    from mindie_pack.builder.options import BuildOptions

    out = tmp_path / "m"
    build_model_dir(BuildOptions(model_dir=tiny_models(family="llama"), output_dir=out, tp=2))
    result = MindSporeCheck(out).result()
    assert result.ok, result.detail
    assert result.detail.startswith("mindspore.load_checkpoint reads a sample of") and "of 2 rank(s)" in result.detail
    (out / "weights/rank_1/checkpoint_1.ckpt").write_bytes(b"\x0a\x05")  # not a checkpoint any more
    failed = MindSporeCheck(out).result()
    assert not failed.ok and "checkpoint_1.ckpt" in failed.detail
