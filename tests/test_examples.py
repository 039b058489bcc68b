"""The bundled example and example specs stay valid."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mindie_pack.spec import load_spec

from conftest import REPO_ROOT

SPECS = sorted((REPO_ROOT / "examples" / "specs").glob("*.yaml"))


def test_there_are_example_specs() -> None:
    assert {p.name for p in SPECS} >= {"qwen2-7b-instruct-4x910b.yaml", "llama-2-7b-1card.yaml",
                                       "baichuan2-7b-chat.yaml"}


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.name)
def test_example_spec_validates(path: Path) -> None:
    spec = load_spec(path)
    assert spec.section("model")["source"].startswith("/data/models/")
    assert spec.section("parallel")["tp"] == len(spec.section("hardware")["devices"])


@pytest.mark.slow
def test_run_example_script(tmp_path: Path) -> None:
    bin_dir = Path(sys.executable).parent
    from deploy_helpers import free_port_block

    env = {**os.environ, "EXAMPLE_WORK": str(tmp_path / "work"), "EXAMPLE_PORT": str(free_port_block())}
    proc = subprocess.run(["bash", str(REPO_ROOT / "examples" / "run-example.sh"), str(bin_dir / "mindie-pack"),
                           sys.executable], capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "example done" in proc.stdout
    assert "smoke" in proc.stdout and "FAILED" not in proc.stdout
    assert (tmp_path / "work" / "model" / "weights" / "rank_1" / "checkpoint_1.ckpt").is_file()
