"""Our output held against MindFormers itself: the network built from our yaml loads every rank strictly."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.options import BuildOptions

pytestmark = [
    pytest.mark.mindformers,
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("mindformers") is None,
                       reason="mindformers is not installed (the dev setup installs it with --no-deps)"),
]
SCRIPT = Path(__file__).with_name("mindformers_strict_load.py")


@pytest.mark.parametrize(("family", "tp", "dtype", "fields"), [
    ("llama", 1, "bfloat16", {}),
    ("llama", 2, "bfloat16", {"rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                               "high_freq_factor": 4.0, "original_max_position_embeddings": 256}}),
    ("llama", 2, "float16", {}),
    ("qwen2", 2, "bfloat16", {}),
    ("qwen2", 4, "float32", {"num_kv_heads": 4}),
    ("qwen2", 1, "bfloat16", {"tie_word_embeddings": True}),
], ids=lambda v: str(v) if not isinstance(v, dict) else ",".join(sorted(v)) or "-")
def test_mindformers_network_loads_every_rank_strictly(family: str, tp: int, dtype: str, fields: dict[str, object],
                                                        tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "model"
    build_model_dir(BuildOptions(model_dir=tiny_models(family=family, **fields), output_dir=out, tp=tp, dtype=dtype))
    proc = subprocess.run([sys.executable, str(SCRIPT), str(out)], cwd=tmp_path, capture_output=True, text=True,
                          timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    result = json.loads(lines[-1].removeprefix("RESULT "))
    assert result["tp"] == tp
    assert result["problems"] == []
    assert result["not_loaded"] == []
    assert result["unused"] == []
    assert result["parameters"] > 0
