"""`mindie-pack bench` against the fake-model emulator: token counts exact, timings checked only by bounds and
orderings that hold on a loaded machine (no wall-clock assertion), goodput with requests that miss the SLO."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mindie_pack.client.bench import BenchConfig, RequestRecord, percentiles, summarize
from mindie_pack.emulator.install import install_emulator

from conftest import CliResult
from deploy_helpers import build_tiny, free_port_block
from emulator_helpers import model_name, running_daemon, write_config_for

pytestmark = pytest.mark.slow
Cli = Callable[..., CliResult]
PREFILL_MS, PER_TOKEN_MS = 200.0, 20.0


def test_percentiles_are_exact() -> None:
    assert percentiles([1.0, 2.0, 3.0, 4.0, 5.0]) == {"mean": 3.0, "p50": 3.0, "p90": 4.6, "p99": 4.96}
    assert percentiles([]) == {"mean": None, "p50": None, "p90": None, "p99": None}


def _record(start: float, ttft_ms: float, tokens: int, tpot_ms: float, requested: int = 5) -> RequestRecord:
    first = start + ttft_ms / 1000
    times = [first + i * tpot_ms / 1000 for i in range(tokens)]
    return RequestRecord(start=start, requested_tokens=requested, ok=True, first_token=first, token_times=times,
                         end=times[-1], output_tokens=tokens)


def test_goodput_counts_only_requests_within_the_slo() -> None:
    records = [_record(0.0, 100, 5, 10), _record(0.1, 300, 5, 10),  # meets; misses the TTFT SLO
               _record(0.2, 150, 5, 80), _record(0.3, 180, 5, 40),  # misses the TPOT SLO; meets
               RequestRecord(start=0.4, requested_tokens=5, error="http 500")]  # failed: never good
    config = BenchConfig(slo_ttft_ms=200, slo_tpot_ms=50, output_len=5)
    summary = summarize(records, 2.0, config)
    assert summary["slo_met"] == 2 and summary["goodput"] == 1.0  # 2 good requests in 2 s
    assert summary["request_throughput"] == 2.0 and summary["failed"] == 1
    assert summary["tpot_ms"]["mean"] == pytest.approx((10 + 10 + 80 + 40) / 4)
    short = summarize([_record(0.0, 100, 3, 10, requested=5)], 1.0, config)
    assert short["short"] == 1 and short["complete"] == 0
    assert short["output_tokens_requested"] == 5 and short["output_tokens"] == 3


@pytest.fixture(scope="module")
def fake_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    root = tmp_path_factory.mktemp("bench")
    _, model_dir = build_tiny(root / "m", tp=1)
    service = install_emulator(root / "Ascend", fake_model=True, prefill_ms=PREFILL_MS,
                               per_token_ms=PER_TOKEN_MS).mindie_service
    port = free_port_block()
    config = write_config_for(model_dir, root / "config.json", port)
    with running_daemon(service, root / "config.json", env={"MIES_SERVICE_MONITOR_MODE": "1"}):
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.2:{port + 2}", model_name(config)


def _server_totals(metrics_url: str, name: str) -> dict[str, float]:
    """The fake model's own timings as the emulator reports them in /metrics (histogram _sum and _count)."""
    text = httpx.get(f"{metrics_url}/metrics", timeout=30).text
    label = f'{{model_name="{name}"}}'
    return {line.split(label)[0]: float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
            if label in line and not line.startswith("#")}


def _server_mean_ms(before: dict[str, float], after: dict[str, float], kind: str) -> float:
    count = after[f"{kind}_count"] - before[f"{kind}_count"]
    return (after[f"{kind}_sum"] - before[f"{kind}_sum"]) / count * 1000


@pytest.mark.parametrize("endpoint", ["openai-chat", "openai-completions", "tgi", "native", "vllm"])
def test_bench_counts_and_timing_bounds(endpoint: str, fake_service: tuple[str, str, str], cli: Cli,
                                        tmp_path: Path) -> None:
    url, metrics_url, name = fake_service
    before = _server_totals(metrics_url, name)
    result = cli("bench", "--url", url, "--model", name, "--endpoint", endpoint, "--concurrency", "4",
                 "--requests", "8", "--warmup", "0", "--output-len", "10", "--json", tmp_path / "b.json")
    after = _server_totals(metrics_url, name)
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["succeeded"] == 8 and summary["complete"] == 8 and summary["failed"] == 0
    assert summary["output_tokens"] == summary["output_tokens_requested"] == 8 * 10
    ttft, tpot, e2e = summary["ttft_ms"], summary["tpot_ms"], summary["e2e_ms"]
    # Bounds that hold however loaded the machine is: the fake model sleeps at least this long.
    assert ttft["p50"] >= PREFILL_MS and e2e["p50"] >= PREFILL_MS + 9 * PER_TOKEN_MS
    assert 0 < tpot["mean"] and ttft["mean"] < e2e["mean"]
    # The client cannot see a token before the server made it: its means are at least the server's own
    # (the fake model's self-reported prefill and end-to-end times for the same 8 requests).
    assert after["request_success_total"] - before["request_success_total"] == 8
    assert ttft["mean"] >= _server_mean_ms(before, after, "time_to_first_token_seconds") >= PREFILL_MS
    assert e2e["mean"] >= _server_mean_ms(before, after, "e2e_request_latency_seconds")
    assert len([line for line in result.stdout.splitlines() if "TTFT ms (FirstTokenTime)" in line]) == 1


@pytest.mark.parametrize("endpoint", ["openai-chat", "openai-completions", "tgi", "native", "vllm"])
def test_one_token_requests_are_complete(endpoint: str, fake_service: tuple[str, str, str], cli: Cli,
                                         tmp_path: Path) -> None:
    url, _, name = fake_service
    result = cli("bench", "--url", url, "--model", name, "--endpoint", endpoint, "--requests", "2", "--warmup", "0",
                 "--output-len", "1", "--json", tmp_path / "b.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads((tmp_path / "b.json").read_text())
    assert summary["complete"] == 2 and summary["output_tokens"] == 2 and summary["tpot_ms"]["mean"] is None


def test_goodput_against_the_fake_model(fake_service: tuple[str, str, str], cli: Cli, tmp_path: Path) -> None:
    url, _, name = fake_service
    # an SLO below the fake prefill: every request misses it, whatever the load
    missed = cli("bench", "--url", url, "--model", name, "--concurrency", "2", "--requests", "4", "--warmup", "0",
                 "--output-len", "3", "--slo-ttft", str(PREFILL_MS / 2), "--json", tmp_path / "miss.json",
                 "--plot", tmp_path / "b.png")
    assert missed.exit_code == 0, missed.stdout + missed.stderr
    summary = json.loads((tmp_path / "miss.json").read_text())
    assert summary["succeeded"] == 4 and summary["slo_met"] == 0 and summary["goodput"] == 0
    assert (tmp_path / "b.png").stat().st_size > 1000
    met = cli("bench", "--url", url, "--model", name, "--concurrency", "2", "--requests", "4", "--warmup", "0",
              "--output-len", "3", "--slo-ttft", "600000", "--json", tmp_path / "met.json")
    assert met.exit_code == 0, met.stdout + met.stderr
    summary = json.loads((tmp_path / "met.json").read_text())
    assert summary["slo_met"] == 4 and summary["goodput"] == summary["request_throughput"]


def test_open_loop_reports_requested_and_achieved_rate(fake_service: tuple[str, str, str], cli: Cli,
                                                       tmp_path: Path) -> None:
    url, _, name = fake_service
    result = cli("bench", "--url", url, "--model", name, "--rate", "20", "--requests", "6", "--warmup", "0",
                 "--output-len", "2", "--json", tmp_path / "b.json")
    assert result.exit_code == 0, result.stdout + result.stderr
    arrival = json.loads((tmp_path / "b.json").read_text())["arrival"]
    assert arrival["requested_rate"] == 20 and arrival["achieved_rate"] > 0 and arrival["scheduled_rate"] > 0
    assert arrival["lag_ms"]["p50"] is not None and isinstance(arrival["client_bound"], bool)
    assert "arrival rate: requested 20 req/s (this run's Poisson schedule" in result.stdout


@pytest.mark.parametrize(("flag", "make"), [
    ("--json", lambda d: d / "missing-folder" / "b.json"),
    ("--json", lambda d: d),
    ("--plot", lambda d: d / "missing-folder" / "b.png"),
])
def test_output_paths_are_checked_before_the_run(flag: str, make: Callable[[Path], Path], cli: Cli,
                                                 tmp_path: Path) -> None:
    port = free_port_block(1)  # nothing listens: a run would fail with connection errors instead
    result = cli("bench", "--url", f"http://127.0.0.1:{port}", "--model", "m", "--requests", "1", flag,
                 make(tmp_path))
    assert result.exit_code != 0
    assert f"{flag} {make(tmp_path)}" in result.stderr
    assert "ConnectError" not in result.stdout + result.stderr and "Traceback" not in result.stderr
