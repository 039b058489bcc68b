"""The build stage through the command line: init -> spec -> build, --json outputs, verify exit codes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from conftest import CliResult

Cli = Callable[..., CliResult]


def test_init_then_build_from_the_spec(cli: Cli, tiny_models: Callable[..., Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    hf_dir = tiny_models(family="qwen2")
    monkeypatch.chdir(tmp_path)
    init = cli("init", "--model", hf_dir, "--tp", "2", "--name", "tiny-qwen")
    assert init.exit_code == 0, init.stderr
    spec = yaml.safe_load((tmp_path / "mindie-pack.yaml").read_text())
    assert spec["model"] == {"source": str(hf_dir), "name": "tiny-qwen", "output": "mindie-models/tiny-qwen",
                             "profile": "mf-ckpt"}
    assert spec["parallel"] == {"tp": 2}
    assert cli("init", "--model", hf_dir).exit_code == 2  # an existing spec is not overwritten without --force

    built = cli("build", "--json")
    assert built.exit_code == 0, built.stderr
    summary = json.loads(built.stdout)
    out = tmp_path / "mindie-models" / "tiny-qwen"
    assert summary["output_dir"] == str(out)
    assert summary["tp"] == 2
    assert summary["family"] == "qwen2"
    assert summary["profile"] == "mf-ckpt"
    assert [w["path"] for w in summary["weights"]] == ["weights/rank_0/checkpoint_0.ckpt",
                                                       "weights/rank_1/checkpoint_1.ckpt"]
    manifest = json.loads((out / "manifest.json").read_text())
    by_path = {r["path"]: r for r in manifest["outputs"]}
    for weight in summary["weights"]:
        assert by_path[weight["path"]]["xxh3_128"] == weight["xxh3_128"]


def test_init_refuses_an_impossible_tp(cli: Cli, tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    result = cli("init", "--model", tiny_models(family="llama"), "--tp", "8", "--spec", tmp_path / "s.yaml")
    assert result.exit_code == 2
    assert "--tp 8 must divide" in result.stderr
    assert not (tmp_path / "s.yaml").exists()


def test_verify_json_and_exit_codes(cli: Cli, tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_models(family="llama")
    out = tmp_path / "m"
    assert cli("build", "--model", hf_dir, "--output", out, "--tp", "2").exit_code == 0
    good = cli("verify", out, "--reference", hf_dir, "--json")
    assert good.exit_code == 0
    report = json.loads(good.stdout)
    assert report["ok"] is True
    assert [c["name"] for c in report["checks"]] == ["manifest", "yaml", "layout", "mindspore", "reference"]

    os.chmod(out / "config.json", 0o600)
    (out / "config.json").write_text((out / "config.json").read_text().replace('"rms_norm_eps"', '"rms_norm_eps" '))
    bad = cli("verify", out)
    assert bad.exit_code == 1
    assert "error: manifest:" in bad.stderr and "config.json" in bad.stderr
    bad_json = cli("verify", out, "--json")
    assert bad_json.exit_code == 1
    assert json.loads(bad_json.stdout)["ok"] is False


def test_verify_reference_mismatch_names_the_tensor(cli: Cli, tiny_models: Callable[..., Path],
                                                    tmp_path: Path) -> None:
    out = tmp_path / "m"
    assert cli("build", "--model", tiny_models(family="llama"), "--output", out).exit_code == 0
    other = tiny_models(family="llama", seed=1)
    result = cli("verify", out, "--reference", other)
    assert result.exit_code == 1
    # Records follow the source files' order; the first tensor there (safetensors sorts names) is lm_head.
    assert "tensor 'lm_head.weight' (rows 0..383 of 'lm_head.weight') differs from" in result.stderr


@pytest.mark.slow
def test_console_script_runs_as_a_subprocess(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "m"
    exe = Path(sys.executable).parent / "mindie-pack"
    proc = subprocess.run([str(exe), "build", "--model", str(tiny_models(family="qwen2")), "--output", str(out),
                           "--tp", "2", "--json"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["tp"] == 2
    proc = subprocess.run([str(exe), "verify", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    # torch and MindSpore loaded: the process (and its MindSpore child) end without the interpreter's
    # teardown; the whole report still arrives through the pipe and the exit code still says what happened.
    hf_dir = tiny_models(family="qwen2")
    proc = subprocess.run([str(exe), "verify", str(out), "--reference", str(hf_dir), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert [(c["name"], c["ok"]) for c in json.loads(proc.stdout)["checks"]] == [
        ("manifest", True), ("yaml", True), ("layout", True), ("mindspore", True), ("reference", True)]
    manifest_path = out / "manifest.json"  # a recorded hash that no longer fits: only the hash taken during
    manifest = json.loads(manifest_path.read_text())  # the comparison (the rank files are read once) sees it
    record = next(r for r in manifest["outputs"] if r["path"] == "weights/rank_1/checkpoint_1.ckpt")
    record["xxh3_128"] = "0" * 32
    os.chmod(manifest_path, 0o600)
    manifest_path.write_text(json.dumps(manifest))
    proc = subprocess.run([str(exe), "verify", str(out), "--reference", str(hf_dir), "--json"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1, proc.stderr
    failed = [c for c in json.loads(proc.stdout)["checks"] if not c["ok"]]
    assert failed[0]["name"] == "manifest" and "weights/rank_1/checkpoint_1.ckpt: xxh3_128 differs" in \
        failed[0]["detail"], failed
