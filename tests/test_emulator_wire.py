"""The emulator's request handling against MindIE 2.3.0's rules (each test names the source it checks), in process
on the fake model; the daemon's flags and its readiness over real HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from mindie_pack.emulator.engine import FakeEngine
from mindie_pack.emulator.install import install_emulator
from mindie_pack.emulator.server import ServiceState, build_business_app, build_management_app, build_metrics_app
from mindie_pack.wire.stream import decode_all

from deploy_helpers import build_tiny, free_port_block
from emulator_helpers import running_daemon, write_config_for


def _config(*, max_seq: int = 256, max_input: int = 200, iters: int = 37, truncation: bool | None = None
            ) -> dict[str, Any]:
    deploy: dict[str, Any] = {"maxSeqLen": max_seq, "maxInputTokenLen": max_input,
                              "ModelConfig": [{"modelName": "m", "modelWeightPath": "/data/models/x/m"}]}
    if truncation is not None:
        deploy["truncation"] = truncation
    return {"BackendConfig": {"ModelDeployConfig": deploy, "ScheduleConfig": {
        "maxIterTimes": iters, "maxPrefillTokens": 8192, "maxBatchSize": 200}}}


def _run(state: ServiceState, body: Callable[[httpx.AsyncClient, httpx.AsyncClient], Any]) -> Any:
    async def main() -> Any:
        business = httpx.AsyncClient(transport=httpx.ASGITransport(build_business_app(state)), base_url="http://b")
        management = httpx.AsyncClient(transport=httpx.ASGITransport(build_management_app(state)),
                                       base_url="http://m")
        async with business, management:
            return await body(business, management)
    return asyncio.run(main())


def _ready(config: dict[str, Any], engine: FakeEngine | None = None) -> ServiceState:
    return ServiceState(config=config, engine=engine or FakeEngine(), ready=True)


def test_requested_lengths_are_honoured_and_defaults_are_the_real_ones() -> None:
    """endpoint_def.h:75 (20 for TGI and /infer), infer_param.cpp:425-427 (maxIterTimes for OpenAI and vLLM)."""
    async def body(b: httpx.AsyncClient, _: httpx.AsyncClient) -> None:
        tgi = (await b.post("/generate", json={"inputs": "a b", "parameters": {"details": True}})).json()
        assert tgi["details"]["generated_tokens"] == 20
        tgi = (await b.post("/generate", json={"inputs": "a b", "parameters": {"details": True,
                                                                              "max_new_tokens": 45}})).json()
        assert tgi["details"]["generated_tokens"] == 45
        native = (await b.post("/infer", json={"inputs": "a b", "parameters": {"details": True}})).json()
        assert native["details"]["generated_tokens"] == 20
        for path, extra in (("/v1/chat/completions", {"messages": [{"role": "user", "content": "a"}]}),
                            ("/v1/completions", {"prompt": "a b"})):
            default = (await b.post(path, json={"model": "m", **extra})).json()
            assert default["usage"]["completion_tokens"] == 37
            asked = (await b.post(path, json={"model": "m", "max_tokens": 60, **extra})).json()
            assert asked["usage"]["completion_tokens"] == 60
        vllm = await b.post("/generate", json={"prompt": "a b", "stream": True})
        assert decode_all("vllm", [vllm.text]).received_tokens == 37
        # the sequence limit still ends a generation (REACH_MAX_SEQ_LEN -> "length")
        capped = (await b.post("/generate", json={"inputs": "a b", "parameters": {
            "details": True, "max_new_tokens": 100000}})).json()
        assert capped["details"]["generated_tokens"] == 256 - 2
        assert capped["details"]["finish_reason"] == "length"
    _run(_ready(_config()), body)


def test_input_limit_is_min_of_max_input_and_max_seq_minus_one_with_truncation() -> None:
    """llm_manager_impl.cpp:1448-1463 and :1382 -> 424 Generation Error."""
    prompt = " ".join(["w"] * 12)

    async def refused(b: httpx.AsyncClient, _: httpx.AsyncClient) -> tuple[int, Any]:
        response = await b.post("/infer", json={"inputs": prompt, "parameters": {"max_new_tokens": 1}})
        return response.status_code, response.json()

    assert _run(_ready(_config(max_seq=64, max_input=10)), refused) == (424, {
        "error": "This model's maximum input ids length cannot be greater than 10,the input ids length is 12",
        "error_type": "Generation Error"})
    status, body = _run(_ready(_config(max_seq=12, max_input=100)), refused)
    assert status == 424 and "greater than 11,the input ids length is 12" in body["error"]
    status, body = _run(_ready(_config(max_seq=64, max_input=10, truncation=True)), refused)
    assert status == 200 and body["generated_text"]


def test_health_before_ready_and_stop_service_drains() -> None:
    """http_handler.cpp:440-452 (503 without body before ready), :851-867 (/stopService waits until idle, then 200
    with no body; a second call is 500 with no body)."""
    state = ServiceState(config=_config(), engine=FakeEngine(per_token_ms=20))

    async def body(b: httpx.AsyncClient, m: httpx.AsyncClient) -> None:
        for path in ("/health", "/v2/health/live", "/v2/health/ready"):
            early = await m.get(path)
            assert early.status_code == 503 and early.content == b""
        state.ready = True
        assert (await m.get("/v2/health/live")).status_code == 200
        order: list[str] = []

        async def generate() -> None:
            response = await b.post("/generate_stream", json={"inputs": "a", "parameters": {"max_new_tokens": 15}})
            assert decode_all("tgi", [response.text]).received_tokens == 15
            order.append("generation finished")

        async def stop() -> None:
            while state.stats.running == 0:
                await asyncio.sleep(0.005)
            response = await m.get("/stopService")
            assert response.status_code == 200 and response.content == b""
            order.append("stopService answered")

        await asyncio.gather(generate(), stop())
        assert order == ["generation finished", "stopService answered"]
        again = await m.get("/stopService")
        assert again.status_code == 500 and again.content == b""
        stopped = await m.get("/health")
        assert stopped.status_code == 503
        assert stopped.json() == {"error": "The service has been stopped.", "error_type": "Service Unavailable"}
        refused = await b.post("/generate", json={"inputs": "a"})
        assert refused.status_code == 503 and refused.json()["error"] == "The service has been stopped"
    _run(state, body)


def test_metrics_need_monitor_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    state = _ready(_config())

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(build_metrics_app(state)),
                                     base_url="http://x") as client:
            return await client.get("/metrics")

    monkeypatch.delenv("MIES_SERVICE_MONITOR_MODE", raising=False)
    off = asyncio.run(get())
    assert off.status_code == 500
    assert off.json()["error"] == "Environment variable MIES_SERVICE_MONITOR_MODE is not set."


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("wire-daemon")
    _, model_dir = build_tiny(root, tp=1)
    return install_emulator(root / "Ascend", fake_model=True).mindie_service, model_dir


@pytest.mark.slow
def test_daemon_flags(installed: tuple[Path, Path], tmp_path: Path) -> None:
    """llm_daemon.cpp:47-48 and :365-388."""
    service, model_dir = installed
    port = free_port_block()
    write_config_for(model_dir, tmp_path / "elsewhere.json", port)
    with running_daemon(service, tmp_path / "elsewhere.json",
                        args=("--config-file", str(tmp_path / "elsewhere.json"), "--expert-parallel", "false")):
        assert httpx.get(f"http://127.0.0.2:{port + 1}/health", timeout=10).status_code == 200
    daemon = str(service / "bin" / "mindieservice_daemon")
    env = {**os.environ, "MIES_CONFIG_JSON_PATH": str(tmp_path / "elsewhere.json")}
    bad = subprocess.run([daemon, "--port", "1"], capture_output=True, text=True, env=env, timeout=60,
                         start_new_session=True)
    assert bad.returncode == 255
    assert "Unrecognized command-line argument, expect [--config-file, --expert-parallel]" in bad.stdout
    missing = subprocess.run([daemon, "--config-file"], capture_output=True, text=True, env=env, timeout=60,
                             start_new_session=True)
    assert missing.returncode == 255 and "Missing value for key: --config-file" in missing.stdout


@pytest.mark.slow
def test_daemon_is_not_ready_while_loading(installed: tuple[Path, Path], tmp_path: Path) -> None:
    service, model_dir = installed
    port = free_port_block()
    write_config_for(model_dir, tmp_path / "config.json", port)
    env = {"MINDIE_EMULATOR_LOAD_DELAY_S": "4"}
    with running_daemon(service, tmp_path / "config.json", env=env, until="[endpoint] Start endpoint success") as proc:
        early = [httpx.get(f"http://127.0.0.2:{port + 1}{path}", timeout=10)
                 for path in ("/health", "/v2/health/live", "/v2/health/ready")]
        assert proc.stdout is not None
        rest = []
        for line in proc.stdout:
            rest.append(line)
            if "Daemon start success!" in line:
                break
        late = httpx.get(f"http://127.0.0.2:{port + 1}/v2/health/ready", timeout=10)
        os.killpg(proc.pid, signal.SIGTERM)
    assert [r.status_code for r in early] == [503, 503, 503] and all(r.content == b"" for r in early)
    assert late.status_code == 200


@pytest.mark.slow
def test_force_stop_kills_the_daemon_group(installed: tuple[Path, Path], tmp_path: Path) -> None:
    """http_handler.cpp:676-677 and :814-830: /stopService?mode=Force answers, then SIGKILLs its group after 5 s."""
    service, model_dir = installed
    port = free_port_block()
    write_config_for(model_dir, tmp_path / "config.json", port)
    with running_daemon(service, tmp_path / "config.json") as proc:
        assert httpx.get(f"http://127.0.0.2:{port + 1}/stopService?mode=Force", timeout=10).status_code == 200
        assert httpx.get(f"http://127.0.0.2:{port + 1}/health", timeout=10).status_code == 503
        proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL
