"""`mindie-pack bench` against the fake-model emulator: timings and token counts are right."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mindie_pack.client.bench import percentiles
from mindie_pack.emulator.install import install_emulator

from conftest import CliResult
from deploy_helpers import build_tiny, free_port_block
from emulator_helpers import running_daemon, write_config_for

pytestmark = pytest.mark.slow


def test_percentiles_are_exact() -> None:
    assert percentiles([1.0, 2.0, 3.0, 4.0, 5.0]) == {"mean": 3.0, "p50": 3.0, "p90": 4.6, "p99": 4.96}
    assert percentiles([]) == {"mean": None, "p50": None, "p90": None, "p99": None}


@pytest.mark.parametrize("endpoint", ["openai-chat", "tgi", "native", "openai-completions"])
def test_bench_measures_ttft_and_tpot_of_the_fake_model(endpoint: str, tmp_path: Path,
                                                        cli: Callable[..., CliResult]) -> None:
    _, model_dir = build_tiny(tmp_path / "m", tp=1)
    service = install_emulator(tmp_path / "Ascend", fake_model=True, prefill_ms=200, per_token_ms=20).mindie_service
    port = free_port_block()
    config = write_config_for(model_dir, tmp_path / "config.json", port)
    name = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["modelName"]
    with running_daemon(service, tmp_path / "config.json"):
        result = cli("bench", "--url", f"http://127.0.0.1:{port}", "--model", name, "--endpoint", endpoint,
                     "--concurrency", "4", "--requests", "12", "--output-len", "10", "--json", tmp_path / "b.json",
                     "--plot", tmp_path / "b.png", "--slo-ttft", "1000", "--slo-tpot", "50")
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["succeeded"] == 12 and summary["failed"] == 0
    assert summary["output_tokens"] == 12 * 10  # from the server's usage/details
    assert summary["ttft_ms"]["mean"] == pytest.approx(200, rel=0.10)
    assert summary["tpot_ms"]["mean"] == pytest.approx(20, rel=0.10)
    assert summary["goodput"] == summary["request_throughput"]
    assert (tmp_path / "b.png").stat().st_size > 1000
    assert "TTFT ms (FirstTokenTime)" in result.stdout
