"""`build` never destroys its input or a previous output: refused output paths, stale staging folders of dead
builds, SIGTERM, the rollback of the swap, OSErrors as one line, overflowing casts, Baichuan v1, tiny-model."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from mindie_pack.builder import staging
from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.options import BuildOptions
from mindie_pack.builder.verify import verify_model_dir
from mindie_pack.errors import PackError
from mindie_pack.tiny_model import TinyModelSpec, make_tiny_model

from conftest import CliResult

Cli = Callable[..., CliResult]


def _one_line_error(result: CliResult, *needles: str) -> str:
    assert result.exit_code == 2, result
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    return lines[0]


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.parametrize("where", ["same", "parent", "inside"])
def test_output_that_would_destroy_the_source_is_refused(cli: Cli, tiny_model_copy: Callable[..., Path],
                                                        where: str) -> None:
    hf_dir = tiny_model_copy(family="llama")
    (hf_dir / "original").mkdir()
    (hf_dir / "original" / "consolidated.pth").write_bytes(b"keep me")
    before = _files(hf_dir)
    output = {"same": hf_dir, "parent": hf_dir.parent, "inside": hf_dir / "original"}[where]
    result = cli("build", "--model", hf_dir, "--output", output, "--force")
    _one_line_error(result, f"--output {output}")
    assert _files(hf_dir) == before


def test_stale_staging_of_a_dead_build_is_removed_and_a_live_one_kept(tiny_models: Callable[..., Path],
                                                                      tmp_path: Path) -> None:
    out = tmp_path / "m"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".m.partial-{dead.pid}-{int(time.time()) - 5}-0000beef"
    stale.mkdir()
    (stale / "junk").write_bytes(b"x" * 100)
    me = os.getpid()
    live = tmp_path / f".m.partial-{me}-{staging._process_start(me)}-0000cafe"
    live.mkdir()
    result = build_model_dir(BuildOptions(model_dir=tiny_models(family="llama"), output_dir=out))
    assert not stale.exists()
    assert live.exists()
    assert any("removed .m.partial-" in note for note in result.notes)


def test_a_killed_swap_is_rolled_back_by_the_next_build(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "m"
    build_model_dir(BuildOptions(model_dir=tiny_models(family="llama"), output_dir=out))
    before = _files(out)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    aside = tmp_path / f".m.old-{dead.pid}-{int(time.time()) - 5}-00000001"
    os.rename(out, aside)  # as a build killed between its two renames leaves it
    with pytest.raises(PackError, match="already exists"):
        build_model_dir(BuildOptions(model_dir=tiny_models(family="llama"), output_dir=out))
    assert _files(out) == before  # restored first, then refused (no --force)


def test_failed_second_rename_puts_the_previous_output_back(tiny_models: Callable[..., Path], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "m"
    build_model_dir(BuildOptions(model_dir=tiny_models(family="llama"), output_dir=out))
    before = _files(out)
    real_rename = os.rename

    def failing_rename(src: str | Path, dst: str | Path) -> None:
        if ".partial-" in str(src):
            raise OSError(28, "No space left on device", str(dst))
        real_rename(src, dst)

    monkeypatch.setattr(staging.os, "rename", failing_rename)
    with pytest.raises(PackError, match="No space left on device"):
        build_model_dir(BuildOptions(model_dir=tiny_models(family="llama"), output_dir=out, tp=2, force=True))
    assert _files(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m"]


def test_sigterm_during_build_leaves_nothing(tmp_path: Path) -> None:
    hf_dir = make_tiny_model(tmp_path / "hf", TinyModelSpec(family="llama", hidden_size=1024, num_heads=8,
                                                            num_kv_heads=8, intermediate_size=4096, num_layers=8,
                                                            vocab_size=32000))
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "mindie_pack", "build", "--model", str(hf_dir), "--output",
                             str(out), "--tp", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".out.partial-*/weights/rank_*/*.ckpt")) and time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the build finished before it could be interrupted: {proc.stderr.read()}")  # type: ignore[union-attr]
        time.sleep(0.01)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf"]


def test_output_parent_is_a_file_is_one_line(cli: Cli, tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    result = cli("build", "--model", tiny_models(family="llama"), "--output", tmp_path / "file" / "m")
    _one_line_error(result, str(tmp_path / "file"))


def test_read_only_output_parent_is_one_line(cli: Cli, tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    if os.geteuid() == 0:
        # root ignores mode bits: use a read-only bind mount instead
        ro = tmp_path / "ro"
        ro.mkdir()
        if subprocess.run(["mount", "--bind", "-o", "ro", str(ro), str(ro)], capture_output=True).returncode:
            pytest.skip("cannot make a read-only mount here")
        try:
            result = cli("build", "--model", tiny_models(family="llama"), "--output", ro / "m")
        finally:
            subprocess.run(["umount", str(ro)], check=True)
    else:
        ro = tmp_path / "ro"
        ro.mkdir(mode=0o500)
        result = cli("build", "--model", tiny_models(family="llama"), "--output", ro / "m")
    _one_line_error(result, str(ro))


def _with_lm_head_value(hf_dir: Path, value: float) -> None:
    path = hf_dir / "model.safetensors"
    tensors = load_file(str(path))
    tensors["lm_head.weight"][3, 5] = value
    save_file(tensors, str(path), metadata={"format": "pt"})


def test_overflowing_cast_is_refused_naming_the_tensor_and_value(cli: Cli, tiny_model_copy: Callable[..., Path],
                                                                 tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="llama", dtype="bfloat16")
    _with_lm_head_value(hf_dir, 1e5)
    result = cli("build", "--model", hf_dir, "--output", tmp_path / "out", "--dtype", "float16")
    _one_line_error(result, "'lm_head.weight'", "99840", "--clamp")
    assert not (tmp_path / "out").exists()
    assert not list(tmp_path.glob(".out.*"))


def test_clamp_saturates_and_verify_agrees(cli: Cli, tiny_model_copy: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="llama", dtype="bfloat16")
    _with_lm_head_value(hf_dir, -1e5)
    out = tmp_path / "out"
    assert cli("build", "--model", hf_dir, "--output", out, "--dtype", "float16", "--clamp").exit_code == 0
    head = ms.load_checkpoint(str(out / "weights/rank_0/checkpoint_0.ckpt"))["lm_head.weight"].asnumpy()
    assert head[3, 5] == -65504.0
    expected = load_file(str(hf_dir / "model.safetensors"))["lm_head.weight"].to(torch.float16).numpy()
    expected[3, 5] = -65504.0
    np.testing.assert_array_equal(head, expected)
    assert verify_model_dir(out, reference=hf_dir).ok


def test_baichuan_v1_is_refused(cli: Cli, tiny_model_copy: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_model_copy(family="baichuan2", num_kv_heads=4)
    config = json.loads((hf_dir / "config.json").read_text())
    config["vocab_size"] = 64000
    (hf_dir / "config.json").write_text(json.dumps(config))
    _one_line_error(cli("build", "--model", hf_dir, "--output", tmp_path / "out"), "Baichuan (v1)", "64000")


def test_tiny_model_refuses_to_overwrite_and_backs_up_with_force(cli: Cli, tmp_path: Path) -> None:
    target = tmp_path / "model"
    target.mkdir()
    (target / "config.json").write_text("{\"mine\": true}")
    _one_line_error(cli("tiny-model", target), str(target), "--force")
    assert (target / "config.json").read_text() == "{\"mine\": true}"
    result = cli("tiny-model", target, "--force")
    assert result.exit_code == 0, result
    backups = list(tmp_path.glob("model.bak-*"))
    assert len(backups) == 1 and (backups[0] / "config.json").read_text() == "{\"mine\": true}"
    assert str(backups[0]) in "".join(result.stderr.split())  # the console wraps long lines
    assert json.loads((target / "config.json").read_text())["model_type"] == "qwen2"


def test_background_input_hashing_stops_when_cancelled(tmp_path: Path) -> None:
    from mindie_pack.builder.manifest import BackgroundHashes
    from mindie_pack.hashing import HashCancelled

    big = tmp_path / "big.bin"
    with big.open("wb") as handle:
        handle.truncate(4 << 30)  # 4 GiB sparse: hashing it all would take seconds
    hashes = BackgroundHashes([big])
    hashes.cancel()
    with pytest.raises(HashCancelled):
        hashes.result()


@pytest.mark.parametrize(("available", "blocks"), [(64 << 30, 64), (1 << 30, 8), (100 << 20, 4)])
def test_input_hash_lag_shrinks_with_available_memory(monkeypatch: pytest.MonkeyPatch, available: int,
                                                      blocks: int) -> None:
    """The input hash re-reads what the conversion read from the page cache: it may trail by at most a quarter
    of the available memory (2 GiB at most, 128 MiB at least), else it would read the input twice from disk."""
    import psutil

    from mindie_pack.builder import convert

    monkeypatch.setattr(psutil, "virtual_memory", lambda: type("Memory", (), {"available": available})())
    assert convert.hash_lag_blocks() == blocks
    assert convert.hash_lag_blocks() * convert.STEP_BYTES <= max(available // 4, 128 << 20)
