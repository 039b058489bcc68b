"""The emulator in MindIE 3.0.0 mode speaks 3.0.0's wire format (MindIE-LLM commit 8b4871ad), while 2.3.0 mode
(commit 40fb0630) keeps its own. Each test names the source lines at both commits; the expected values are
transcribed from there (the oracle), not from our builders."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from mindie_pack.emulator import metrics as prom
from mindie_pack.emulator.engine import FakeEngine
from mindie_pack.emulator.server import ServiceState, build_business_app, build_management_app, build_metrics_app
from mindie_pack.wire import format as wire
from mindie_pack.wire.stream import decode_all

V23, V30 = "2.3.0", "3.0.0"


def _config() -> dict[str, Any]:
    deploy = {"maxSeqLen": 256, "maxInputTokenLen": 200,
              "ModelConfig": [{"modelName": "m", "modelWeightPath": "/data/models/x/m"}]}
    return {"BackendConfig": {"ModelDeployConfig": deploy, "ScheduleConfig": {
        "maxIterTimes": 37, "maxPrefillTokens": 8192, "maxBatchSize": 200}}}


def _state(release: str, **kwargs: Any) -> ServiceState:
    return ServiceState(config=_config(), engine=FakeEngine(), ready=True, release=release, **kwargs)


def _run(state: ServiceState, body: Callable[[httpx.AsyncClient, httpx.AsyncClient, httpx.AsyncClient], Any]) -> Any:
    async def main() -> Any:
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(build(state)), base_url="http://x")
                   for build in (build_business_app, build_management_app, build_metrics_app)]
        async with clients[0], clients[1], clients[2]:
            return await body(*clients)
    return asyncio.run(main())


CHAT = {"model": "m", "messages": [{"role": "user", "content": "one two three"}], "max_tokens": 4,
        "ignore_eos": True}
COMPLETION = {"model": "m", "prompt": "one two three", "max_tokens": 4, "ignore_eos": True}


def _openai(release: str) -> dict[str, Any]:
    async def body(b: httpx.AsyncClient, _m: httpx.AsyncClient, _x: httpx.AsyncClient) -> dict[str, Any]:
        chat = (await b.post("/v1/chat/completions", json=CHAT)).json()
        completion = (await b.post("/v1/completions", json=COMPLETION)).json()
        chat_stream = await b.post("/v1/chat/completions", json={**CHAT, "stream": True})
        completion_stream = await b.post("/v1/completions", json={**COMPLETION, "stream": True})
        return {"chat": chat, "completion": completion,
                "chat_stream": decode_all("openai-chat", chat_stream.text),
                "completion_stream": decode_all("openai-completions", completion_stream.text)}
    return _run(_state(release), body)


def _last_usage(result: Any) -> dict[str, Any]:
    return [e for e in result.events if isinstance(e, dict) and "usage" in e][-1]["usage"]


def test_openai_perf_fields_only_with_benchmark_enable_in_3_0(monkeypatch: pytest.MonkeyPatch) -> None:
    """3.0.0 adds usage.batch_size/queue_wait_time and prefill_time/decode_time_arr only when
    MINDIE_LLM_BENCHMARK_ENABLE is 1 or 2 (@8b4871ad sri/single_req_vllm_openai_infer_interface.cpp:985-1002 and
    :1162-1176, sri/single_req_vllm_openai_completions_infer_interface.cpp:528-542 and :635-648, endpoint_def.h:
    104-107); 2.3.0 always (@40fb0630 sri/single_req_vllm_openai_infer_interface.cpp:1000-1010 and :1171-1180,
    ..._completions_...cpp:540 and :642)."""
    monkeypatch.delenv("MINDIE_LLM_BENCHMARK_ENABLE", raising=False)
    plain = {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}  # the completions prompt: 3 words
    chat_keys = ["prompt_tokens", "completion_tokens", "total_tokens"]  # the chat prompt goes through a template
    v30 = _openai(V30)
    assert list(v30["chat"]["usage"]) == chat_keys and v30["completion"]["usage"] == plain
    assert "prefill_time" not in v30["chat"] and "decode_time_arr" not in v30["chat"]
    assert list(v30["chat"]) == ["id", "object", "created", "model", "choices", "usage"]
    assert list(_last_usage(v30["chat_stream"])) == chat_keys and _last_usage(v30["completion_stream"]) == plain
    assert v30["chat_stream"].output_tokens == 4 and v30["chat_stream"].done_marker  # the decoder reads 3.0

    v23 = _openai(V23)  # unchanged
    perf = {**plain, "batch_size": [1, 1, 1, 1], "queue_wait_time": [0, 0, 0, 0]}
    perf_keys = [*chat_keys, "batch_size", "queue_wait_time"]
    assert list(v23["chat"]["usage"]) == perf_keys and v23["completion"]["usage"] == perf
    assert list(v23["chat"])[-2:] == ["prefill_time", "decode_time_arr"]
    assert list(_last_usage(v23["chat_stream"])) == perf_keys and _last_usage(v23["completion_stream"]) == perf

    for value, on in (("1", True), ("2", True), (" 2x", True), ("0", False), ("3", False), ("yes", False)):
        monkeypatch.setenv("MINDIE_LLM_BENCHMARK_ENABLE", value)  # EnvUtil::GetInt = std::stoi (env_util.cpp:74-89)
        assert wire.openai_perf_fields(V30) is on, value
        assert wire.openai_perf_fields(V23) is True
    monkeypatch.setenv("MINDIE_LLM_BENCHMARK_ENABLE", "1")
    enabled = _openai(V30)
    assert list(enabled["chat"]["usage"]) == perf_keys and enabled["completion"]["usage"] == perf
    assert list(enabled["chat"])[-2:] == ["prefill_time", "decode_time_arr"]
    assert _last_usage(enabled["completion_stream"]) == perf


def test_live_and_ready_answer_the_abnormal_nodes_unwrapped_in_3_0() -> None:
    """3.0.0 /v2/health/live and /ready -> HandleGetLivenessAndReadiness: 500 whose body is EncodeAbnormalNodeInfo's
    JSON (@8b4871ad http_handler.cpp:572-594, :776-791; parse_protocol.cpp:430-442); /health keeps the 2.3.0 answer,
    that JSON as the `error` string of an error body (@8b4871ad http_handler.cpp:621-630, :1343-1348)."""
    nodes = {"message": "Abnormal node detected", "no_contact_node": ["node(10.0.0.2) is abnormal."]}
    wrapped = {"error": '{"message":"Abnormal node detected","no_contact_node":["node(10.0.0.2) is abnormal."]}',
               "error_type": "Incomplete Generation"}

    async def body(_b: httpx.AsyncClient, m: httpx.AsyncClient, _x: httpx.AsyncClient) -> list[tuple[int, Any]]:
        return [((r := await m.get(path)).status_code, r.json()) for path in
                ("/health", "/v2/health/live", "/v2/health/ready")]

    assert _run(_state(V30, abnormal=["10.0.0.2"]), body) == [(500, wrapped), (500, nodes), (500, nodes)]
    assert _run(_state(V23, abnormal=["10.0.0.2"]), body) == [(500, wrapped)] * 3  # 2.3.0 unchanged


def test_timed_health_timeout_message() -> None:
    """3.0.0: /health/timed's 500 carries the SimulateResult message, "Engine callback timeout" for a wait that ran
    out (@8b4871ad http_handler.cpp:555-561, health_checker/simulate_request_executor.cpp:143)."""
    async def body(_b: httpx.AsyncClient, m: httpx.AsyncClient, _x: httpx.AsyncClient) -> tuple[int, Any]:
        r = await m.get("/health/timed-1")
        return r.status_code, r.json()

    slow = ServiceState(config=_config(), engine=FakeEngine(prefill_ms=3000), ready=True, release=V30)
    assert _run(slow, body) == (500, {"error": "Engine callback timeout", "error_type": "Incomplete Generation"})
    slow23 = ServiceState(config=_config(), engine=FakeEngine(prefill_ms=3000), ready=True, release=V23)
    assert _run(slow23, body) == (500, {"error": "Virtual inference timed out after 1 s.",
                                        "error_type": "Incomplete Generation"})


def test_metrics_in_3_0(monkeypatch: pytest.MonkeyPatch) -> None:
    """3.0.0 /metrics: text/plain; charset=utf-8 (@8b4871ad http_handler.cpp:960-972; 2.3.0 application/json,
    @40fb0630 :897-900); token buckets up to 128000 (@8b4871ad prometheus_metrics.cpp:31-32); help texts "on NPU."
    (:120) and "hit rate." (:201); all_radix_match_num and npu_radix_match_hit_num appended (:210-220)."""
    monkeypatch.setenv("MIES_SERVICE_MONITOR_MODE", "1")

    async def body(b: httpx.AsyncClient, _m: httpx.AsyncClient, x: httpx.AsyncClient) -> httpx.Response:
        await b.post("/generate", json={"inputs": "a b", "parameters": {"max_new_tokens": 3}})
        return await x.get("/metrics")

    v30 = _run(_state(V30), body)
    assert v30.status_code == 200 and v30.headers["content-type"] == "text/plain; charset=utf-8"
    text = v30.text
    assert "# HELP num_requests_running Number of requests currently running on NPU.\n" in text
    assert "# HELP npu_prefix_cache_hit_rate NPU prefix cache block hit rate.\n" in text
    tail = ('# HELP num_preemptions_total Cumulative number of preemption from the engine.\n'
            '# TYPE num_preemptions_total counter\nnum_preemptions_total{model_name="m"} 0\n'
            '# HELP all_radix_match_num Total number of prefill prompt tokens participating in prefix cache radix '
            'match.\n# TYPE all_radix_match_num gauge\nall_radix_match_num{model_name="m"} 0\n'
            '# HELP npu_radix_match_hit_num Number of prefill prompt tokens hit by prefix cache radix match.\n'
            '# TYPE npu_radix_match_hit_num gauge\nnpu_radix_match_hit_num{model_name="m"} 0\n')
    assert text.endswith(tail)
    buckets = [line.split('le="')[1].split('"')[0] for line in text.splitlines()
               if line.startswith("request_prompt_tokens_bucket")]
    assert buckets == ["10", "50", "100", "200", "500", "1000", "2000", "5000", "10000", "16000", "20000", "32000",
                       "50000", "64000", "128000", "+Inf"]

    v23 = _run(_state(V23), body)  # unchanged
    assert v23.headers["content-type"] == "application/json"
    assert "running on GPU." in v23.text and "radix" not in v23.text
    assert v23.text.endswith('num_preemptions_total{model_name="m"} 0\n')
    assert len(prom.METRICS) == 20 and len(prom.METRICS_V3) == 22


def test_release_selection() -> None:
    """Releases read from conf/emulator.json "mindie_version"; anything below 3 keeps 2.3.0's shapes."""
    assert [wire.is_v3(r) for r in ("3.0.0", "3.0.RC1", "2.3.0", "2.2.RC1", "1.0.RC3", "", None)] == [
        True, True, False, False, False, False, False]
