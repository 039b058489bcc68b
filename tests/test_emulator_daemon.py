"""The emulated mindieservice_daemon as a real subprocess: every endpoint, shapes, status codes, lifecycle."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mindie_pack.emulator.install import install_emulator

from deploy_helpers import build_tiny, free_port_block
from emulator_helpers import model_name, running_daemon, sse_events, write_config_for

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return build_tiny(tmp_path_factory.mktemp("emu-model"))


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_emulator(tmp_path_factory.mktemp("emu") / "Ascend").mindie_service


@pytest.fixture(scope="module")
def live(built: tuple[Path, Path], service: Path, tmp_path_factory: pytest.TempPathFactory
         ) -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    folder = tmp_path_factory.mktemp("run")
    port = free_port_block()
    config = write_config_for(built[1], folder / "config.json", port)
    with running_daemon(service, folder / "config.json", env={"MIES_SERVICE_MONITOR_MODE": "1"}):
        yield f"http://127.0.0.1:{port}", f"http://127.0.0.2:{port + 1}", f"http://127.0.0.2:{port + 2}", config


def test_install_tree(service: Path) -> None:
    assert os.access(service / "bin" / "mindieservice_daemon", os.X_OK)
    assert oct((service / "conf" / "config.json").stat().st_mode & 0o777) == "0o640"
    assert (service / "set_env.sh").is_file() and (service / "logs").is_dir()
    default = json.loads((service / "conf" / "config.json").read_text())
    assert default["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["modelName"] == "llama_65b"


def test_business_endpoints(live: tuple[str, str, str, dict[str, Any]]) -> None:
    """Shapes of MindIE 2.3.0 (mindie_pack/wire/format.py cites the response builders) on the tiny real model."""
    business, _, _, config = live
    name = model_name(config)
    weights = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["modelWeightPath"]
    with httpx.Client(timeout=60) as client:
        listing = client.get(f"{business}/v1/models")
        assert listing.text.startswith('{\n    "data": [')  # http_handler.cpp:1330 dump(4), keys sorted
        parts = [p for p in weights.split("/") if p]
        assert listing.json() == {"object": "list", "data": [{
            "id": name, "object": "model", "owned_by": "MindIE Server", "parent": "null",
            "root": "***/" + "/".join(parts[2:])}]}
        card = client.get(f"{business}/v1/models/{name}").json()
        assert set(card) == {"id", "object", "created", "owned_by"} and card["id"] == name
        missing = client.get(f"{business}/v1/models/other")
        assert missing.status_code == 404
        assert missing.json() == {"error": "Model other not found.", "error_type": "NotFoundError"}

        tgi = client.post(f"{business}/generate", json={"inputs": "Hello world", "parameters": {
            "max_new_tokens": 5, "details": True, "do_sample": False}}).json()
        assert list(tgi) == ["details", "generated_text"]
        assert tgi["details"]["generated_tokens"] == 5 and len(tgi["details"]["tokens"]) == 5
        assert tgi["details"]["tokens"][0]["text"] is None and tgi["details"]["prefill"] == []
        assert tgi["details"]["finish_reason"] == "length"
        plain = client.post(f"{business}/generate", json={"inputs": "Hello world", "stream": True,
                                                           "parameters": {"max_new_tokens": 5}})
        assert plain.headers["content-type"].startswith("application/json")  # TGI via /generate never streams
        assert plain.json() == {"generated_text": tgi["generated_text"]}

        vllm = client.post(f"{business}/generate", json={"prompt": "Hello world", "max_tokens": 5}).json()
        assert vllm["text"][0] == "Hello world " + tgi["generated_text"]

        stream = client.post(f"{business}/generate_stream", json={"inputs": "Hello world", "parameters": {
            "max_new_tokens": 5}})
        assert stream.headers["content-type"].startswith("text/event-stream")
        events = sse_events(stream.text)
        assert len(events) == 5  # the last event carries the last token AND generated_text
        assert all(e["generated_text"] is None and e["details"] is None for e in events[:4])
        assert events[-1]["generated_text"] == tgi["generated_text"] and events[-1]["details"] is None
        assert [e["token"]["id"] for e in events] == [t["id"] for t in tgi["details"]["tokens"]]
        assert "".join(e["token"]["text"] for e in events) == tgi["generated_text"]

        native = client.post(f"{business}/infer", json={"inputs": "Hello world", "stream": False,
                                                         "parameters": {"max_new_tokens": 5}}).json()
        assert native == {"generated_text": tgi["generated_text"]}  # details only when asked
        native = client.post(f"{business}/infer", json={"inputs": "Hello world", "stream": False,
                                                         "parameters": {"max_new_tokens": 5, "details": True}}).json()
        assert native["details"]["generated_token_ids"] == [t["id"] for t in tgi["details"]["tokens"]]
        assert set(native["details"]) == {"finish_reason", "generated_tokens", "generated_token_ids", "seed"}
        native_stream = sse_events(client.post(f"{business}/infer", json={
            "inputs": "Hello world", "stream": True, "parameters": {"max_new_tokens": 5}}).text)
        assert len(native_stream) == 5
        assert native_stream[0]["prefill_time"] is not None and native_stream[1]["decode_time"] is not None
        assert native_stream[-1]["token"] == {"id": tgi["details"]["tokens"][-1]["id"], "text": None}
        assert native_stream[-1]["generated_text"] == tgi["generated_text"] and native_stream[-1]["details"] is None

        chat = client.post(f"{business}/v1/chat/completions", json={
            "model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}).json()
        assert chat["object"] == "chat.completion" and chat["model"] == name
        assert chat["choices"][0]["message"]["role"] == "assistant"
        assert chat["usage"]["completion_tokens"] == 4 and len(chat["usage"]["batch_size"]) == 4
        assert chat["usage"]["total_tokens"] == chat["usage"]["prompt_tokens"] + 4
        assert len(chat["decode_time_arr"]) == 3 and isinstance(chat["prefill_time"], int)
        chunks = sse_events(client.post(f"{business}/v1/chat/completions", json={
            "model": name, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4, "stream": True}).text)
        assert chunks[-1] == "[DONE]" and len(chunks) == 1 + 4 + 1
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert all(c["choices"][0]["delta"]["role"] == "assistant" for c in chunks[:-1])
        last = chunks[-2]  # the last CONTENT chunk carries finish_reason and usage
        assert last["choices"][0]["finish_reason"] == "length" and last["usage"]["completion_tokens"] == 4
        assert last["choices"][0]["delta"]["content"] != "" or chat["choices"][0]["message"]["content"] == ""
        assert "".join(c["choices"][0]["delta"]["content"] for c in chunks[:-1]) == \
            chat["choices"][0]["message"]["content"]

        completion = client.post(f"{business}/v1/completions", json={"model": name, "prompt": "Hello world",
                                                                     "max_tokens": 5}).json()
        assert completion["object"] == "text_completion" and "prefill_time" not in completion
        assert completion["choices"][0]["text"] == tgi["generated_text"]
        completion_chunks = sse_events(client.post(f"{business}/v1/completions", json={
            "model": name, "prompt": "Hello world", "max_tokens": 5, "stream": True}).text)
        assert completion_chunks[-1] == "[DONE]" and len(completion_chunks) == 5 + 1
        assert completion_chunks[-2]["choices"][0]["finish_reason"] == "length"
        assert completion_chunks[-2]["usage"]["completion_tokens"] == 5


def test_error_bodies(live: tuple[str, str, str, dict[str, Any]]) -> None:
    business, _, _, _ = live
    with httpx.Client(timeout=60) as client:
        wrong_model = client.post(f"{business}/v1/chat/completions", json={
            "model": "other", "messages": [{"role": "user", "content": "hi"}]})
        assert wrong_model.status_code == 422  # sri/single_req_vllm_openai_infer_interface.cpp:615
        assert wrong_model.json() == {"error": "Model not found", "error_type": "Input Validation Error"}
        no_model = client.post(f"{business}/v1/completions", json={"prompt": "hi"})
        assert no_model.status_code == 422 and no_model.json()["error"] == "Request contains not model or model null"
        neither = client.post(f"{business}/generate", json={"text": "x"})
        assert neither.status_code == 422 and neither.json()["error_type"] == "Input Validation Error"
        assert json.loads(neither.json()["error"])["error_type"] == "validation"  # a JSON string inside
        bad_param = client.post(f"{business}/generate", json={"inputs": "x", "parameters": {"max_new_tokens": 0}})
        assert bad_param.status_code == 422
        assert bad_param.json()["error"] == "Parameter max_new_tokens must be in (0,2147483647], got 0."
        for path in ("/generate", "/infer"):  # temperature 0 is refused by TGI and /infer, allowed by OpenAI
            zero = client.post(f"{business}{path}", json={"inputs": "x", "parameters": {"temperature": 0}})
            assert zero.status_code == 422 and zero.json()["error"].startswith("Parameter temperature must be in (0.0,")
        not_json = client.post(f"{business}/infer", content=b"{oops")
        assert not_json.status_code == 422 and not_json.json()["error"] == "Failed to parse request context to json"


def test_management_and_metrics(live: tuple[str, str, str, dict[str, Any]]) -> None:
    business, management, metrics, config = live
    with httpx.Client(timeout=60) as client:
        client.post(f"{business}/generate", json={"inputs": "Hello world", "parameters": {"max_new_tokens": 3}})
        health = client.get(f"{management}/health")
        assert health.status_code == 200 and health.content == b""
        assert client.get(f"{management}/v2/health/live").status_code == 200
        assert client.get(f"{management}/v2/health/ready").status_code == 200
        assert client.get(f"{management}/health/timed-5").json() == {"status": "healthy"}
        assert client.get(f"{management}/health/timed-700").status_code == 404
        assert client.get(f"{business}/health").status_code == 404  # health lives on the management plane only
        response = client.get(f"{metrics}/metrics")
        assert response.headers["content-type"].startswith("application/json")  # http_handler.cpp:899
        text = response.text
    label = f'model_name="{model_name(config)}"'
    types = dict(line.split()[2:4] for line in text.splitlines() if line.startswith("# TYPE"))
    assert len(types) == 20  # prometheus_metrics.cpp:85-149
    assert {k for k, v in types.items() if v == "histogram"} == {
        "time_to_first_token_seconds", "time_per_output_token_seconds", "e2e_request_latency_seconds",
        "request_prompt_tokens", "request_generation_tokens"}
    assert types["request_success_total"] == "counter" and types["num_requests_running"] == "gauge"
    samples = dict(line.rsplit(" ", 1) for line in text.splitlines() if line and not line.startswith("#"))
    assert int(samples[f"request_success_total{{{label}}}"]) >= 1
    assert int(samples[f"request_generation_tokens_count{{{label}}}"]) >= 1
    assert samples[f'time_to_first_token_seconds_bucket{{{label},le="+Inf"}}'] == \
        samples[f"time_to_first_token_seconds_count{{{label}}}"]
    assert f'time_to_first_token_seconds_bucket{{{label},le="0.001"}}' in samples  # prometheus_metrics.cpp:25


def test_invalid_config_is_refused_and_the_group_killed(built: tuple[Path, Path], service: Path,
                                                         tmp_path: Path) -> None:
    config = write_config_for(built[1], tmp_path / "config.json", free_port_block())
    config["BackendConfig"]["npuDeviceIds"] = [[0, 0]]
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = subprocess.run([str(service / "bin" / "mindieservice_daemon")], capture_output=True, text=True,
                          env={**os.environ, "MIES_CONFIG_JSON_PATH": str(tmp_path / "config.json")}, timeout=120,
                          start_new_session=True)
    assert proc.returncode == -signal.SIGKILL
    assert f"ConfigManager: Load Config from {tmp_path / 'config.json'}." in proc.stdout
    assert "[ERROR] BackendConfig.npuDeviceIds[0]: device 0 is listed twice: npuDeviceID does not allow " \
           "repetitive element" in proc.stdout
    assert "Failed to init endpoint! Please check the service log or console output." in proc.stdout
    assert "Daemon start success!" not in proc.stdout


def test_config_errors_are_logged_in_the_daemons_wording(built: tuple[Path, Path], service: Path,
                                                         tmp_path: Path) -> None:
    """The config stage knows MindIE 2.3.0's own wording for these (schedule_config.cpp CheckParam, the
    compulsory-field reader): the emulator logs that, not ours."""
    config = write_config_for(built[1], tmp_path / "config.json", free_port_block())
    config["BackendConfig"]["ScheduleConfig"]["maxBatchSize"] = 6000
    del config["ServerConfig"]["maxLinkNum"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    proc = subprocess.run([str(service / "bin" / "mindieservice_daemon")], capture_output=True, text=True,
                          env={**os.environ, "MIES_CONFIG_JSON_PATH": str(tmp_path / "config.json")}, timeout=120,
                          start_new_session=True)
    assert proc.returncode == -signal.SIGKILL
    assert "maxBatchSize [6000] is out of bound [5000]" in proc.stdout
    assert "maxLinkNum: missing compulsory field" in proc.stdout
    assert "Daemon start success!" not in proc.stdout


def test_config_file_rules_are_enforced(built: tuple[Path, Path], service: Path, tmp_path: Path) -> None:
    write_config_for(built[1], tmp_path / "config.json", free_port_block())
    os.chmod(tmp_path / "config.json", 0o644)
    proc = subprocess.run([str(service / "bin" / "mindieservice_daemon")], capture_output=True, text=True,
                          env={**os.environ, "MIES_CONFIG_JSON_PATH": str(tmp_path / "config.json")}, timeout=120,
                          start_new_session=True)
    assert proc.returncode != 0
    # the real daemon's words (its path check), and deploy turns them into the fix
    assert (f"Check path: {tmp_path / 'config.json'} failed, current permission is 644, required no greater "
            "than 640") in proc.stdout
    from mindie_pack.deploy.hints import hints_for

    assert any("chmod 640 config.json" in hint for hint in hints_for(proc.stdout.splitlines()))


def test_occupied_port(built: tuple[Path, Path], service: Path, tmp_path: Path) -> None:
    port = free_port_block()
    write_config_for(built[1], tmp_path / "config.json", port)
    with socket.socket() as sock:
        sock.bind(("0.0.0.0", port + 2))
        sock.listen()
        proc = subprocess.run([str(service / "bin" / "mindieservice_daemon")], capture_output=True, text=True,
                              env={**os.environ, "MIES_CONFIG_JSON_PATH": str(tmp_path / "config.json")},
                              timeout=120, start_new_session=True)
    assert proc.returncode == -signal.SIGKILL
    assert f"Socket bind failed for port {port + 2}" in proc.stdout
    assert "Management or Business or Metrics Http server listen port is occupied" in proc.stdout


def test_sigterm_prints_the_killing_line_and_exits(built: tuple[Path, Path], service: Path, tmp_path: Path) -> None:
    port = free_port_block()
    write_config_for(built[1], tmp_path / "config.json", port)
    with running_daemon(service, tmp_path / "config.json", env={"MINDIE_EMULATOR_FAKE_MODEL": "1"}) as proc:
        assert httpx.get(f"http://127.0.0.2:{port + 2}/metrics").status_code == 500  # monitor mode off
        os.kill(proc.pid, signal.SIGTERM)
        rest = proc.communicate(timeout=60)[0]
    assert proc.returncode == 0
    assert "Daemon is killing, please wait about 15 seconds..." in rest
    log = (service / "logs" / "mindservice.log").read_text()
    assert "Daemon start success!" in log


def test_stop_service_then_health_is_503(built: tuple[Path, Path], service: Path, tmp_path: Path) -> None:
    port = free_port_block()
    write_config_for(built[1], tmp_path / "config.json", port)
    with running_daemon(service, tmp_path / "config.json", env={"MINDIE_EMULATOR_FAKE_MODEL": "1"}):
        management = f"http://127.0.0.2:{port + 1}"
        assert httpx.get(f"{management}/stopService").status_code == 200
        health = httpx.get(f"{management}/health")
        assert health.status_code == 503
        assert health.json() == {"error": "The service has been stopped.", "error_type": "Service Unavailable"}
        assert httpx.get(f"{management}/stopService").status_code == 500
