"""The chat server's proxy over real HTTP on loopback, against a scripted upstream that sends exact bytes.

The scripted upstream replays what MindIE 2.3.0 sends (single_req_vllm_openai_infer_interface.cpp at 40fb0630:
role repeated in every delta, finish_reason and usage in the last content chunk, then `data: [DONE]`; error body
`{"error", "error_type"}` from http_rest_resource.cpp:163-168) plus the failures a real service can have: a
stream that ends early, a connection that breaks, an error event, silence. The emulator-based tests are in
test_chat_browser.py.
"""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mindie_pack.chat.app import ChatSettings, build_app
from mindie_pack.commands.chat_cmds import bind

REPO = Path(__file__).resolve().parents[1]


def sse(body: Any) -> bytes:
    return f"data: {body if isinstance(body, str) else json.dumps(body)}\n\n".encode()


def chunk(content: str | None, finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
    delta = {"role": "assistant"} if content is None else {"role": "assistant", "content": content}
    body: dict[str, Any] = {"id": "1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                            "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if usage:
        body["usage"] = usage
    return sse(body)


class Upstream:
    """A scripted MindIE business plane: the request's `model` picks the behaviour."""

    def __init__(self) -> None:
        self.closed = threading.Event()  # set when a streaming answer was abandoned by its client
        self.requests: list[dict[str, Any]] = []

    def app(self) -> Starlette:
        async def models(_: Request) -> Response:
            return JSONResponse({"data": [{"id": "mindie", "object": "model", "owned_by": "MindIE Server"}],
                                 "object": "list"})

        async def chat(request: Request) -> Response:
            body = await request.json()
            self.requests.append(body)
            model = body["model"]
            if model == "too-long":
                return JSONResponse({"error": "This model's maximum input ids length cannot be greater than 10,"
                                     "the input ids length is 12", "error_type": "Generation Error"},
                                    status_code=424)
            return StreamingResponse(self.stream(model), media_type="text/event-stream")

        return Starlette(routes=[Route("/v1/models", models), Route("/v1/chat/completions", chat, methods=["POST"])])

    async def stream(self, model: str) -> AsyncIterator[bytes]:
        usage = {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8, "batch_size": [1, 1, 1],
                 "queue_wait_time": [3, 0, 0]}
        if model == "silent":
            await asyncio.sleep(60)
        yield chunk("")  # MindIE's first chunk: role and empty content
        for piece in ("Hel", "lo ", "wörld"):
            if model == "endless":
                break
            await asyncio.sleep(0.01)
            last = piece == "wörld"
            yield chunk(piece, "stop" if last else None, usage if last else None)
            if model in ("short", "broken", "error-event") and piece == "lo ":
                break
        if model == "broken":
            raise RuntimeError("the service died")  # uvicorn drops the connection mid-body
        if model == "error-event":
            yield sse({"error": "Failed to get engine response.", "error_type": "Incomplete Generation"})
            return
        if model == "endless":
            try:
                for index in range(3000):
                    yield chunk(f"{index} ")
                    await asyncio.sleep(0.02)
            finally:
                self.closed.set()
            return
        if model not in ("short", "no-done"):
            yield sse("[DONE]")


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    sock = bind("127.0.0.1", 0)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


@pytest.fixture(scope="module")
def upstream() -> Iterator[tuple[Upstream, str]]:
    scripted = Upstream()
    with serve(scripted.app()) as url:
        yield scripted, url


@pytest.fixture(scope="module")
def page(upstream: tuple[Upstream, str]) -> Iterator[str]:
    with serve(build_app(ChatSettings(business_url=upstream[1], read_timeout_s=1.0))) as url:
        yield url


def ask(page: str, model: str, **fields: Any) -> list[dict[str, Any]]:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **fields}
    response = httpx.post(f"{page}/api/chat", json=body, timeout=30)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/x-ndjson"
    return [json.loads(line) for line in response.text.splitlines()]


def test_real_mindie_stream_through_the_proxy(page: str, upstream: tuple[Upstream, str]) -> None:
    events = ask(page, "mindie", temperature=0, max_tokens=3)
    assert [e["type"] for e in events] == ["request", "delta", "delta", "delta", "done"]
    request = events[0]
    assert request["url"] == upstream[1] + "/v1/chat/completions"
    assert request["body"] == {"model": "mindie", "messages": [{"role": "user", "content": "hi"}], "temperature": 0,
                               "max_tokens": 3, "stream": True}
    assert upstream[0].requests[-1] == request["body"]  # what was sent is what the page shows
    assert "".join(e["content"] for e in events[1:4]) == "Hello wörld"
    times = [e["t_ms"] for e in events[1:]]
    assert times == sorted(times) and times[0] > 0
    done = events[-1]
    assert done["finish_reason"] == "stop" and done["usage"]["completion_tokens"] == 3
    assert (done["chunks"], done["content_chunks"], done["notes"]) == (4, 3, [])


def test_missing_done_after_finish_is_a_note(page: str) -> None:
    events = ask(page, "no-done")
    assert [e["type"] for e in events] == ["request", "delta", "delta", "delta", "done"]
    assert events[-1]["notes"] == ["the stream ended without `data: [DONE]`"]


def test_stream_ending_early_is_cut(page: str) -> None:
    events = ask(page, "short")
    assert events[-1]["type"] == "error"
    assert events[-1]["message"] == ("the stream was cut after 3 chunk(s): the service closed it without a "
                                     "finish_reason or `data: [DONE]`")


def test_broken_connection_mid_stream_is_reported(page: str, upstream: tuple[Upstream, str]) -> None:
    events = ask(page, "broken")
    assert [e["type"] for e in events] == ["request", "delta", "delta", "error"]
    assert events[-1]["message"].startswith(f"the stream was cut after 3 chunk(s): the connection to "
                                            f"{upstream[1]}/v1/chat/completions broke (")


def test_error_event_in_the_stream_is_reported(page: str) -> None:
    events = ask(page, "error-event")
    assert events[-1] == {"type": "error", "message": "the service reported an error in the stream: Incomplete "
                          "Generation: Failed to get engine response.", "status": None, "body": None,
                          "t_ms": events[-1]["t_ms"], "chunks": 3}


def test_http_error_body_is_passed_on(page: str, upstream: tuple[Upstream, str]) -> None:
    events = ask(page, "too-long")
    error = events[-1]
    assert error["type"] == "error" and error["status"] == 424
    assert json.loads(error["body"])["error_type"] == "Generation Error"
    assert error["message"] == (f"the service answered HTTP 424 to {upstream[1]}/v1/chat/completions: Generation "
                                "Error: This model's maximum input ids length cannot be greater than 10,the input "
                                "ids length is 12")


def test_silence_hits_the_read_timeout(page: str, upstream: tuple[Upstream, str]) -> None:
    events = ask(page, "silent")
    assert events[-1]["message"] == (f"the service at {upstream[1]}/v1/chat/completions sent nothing for 1 s "
                                     "(read timeout)")


def test_client_going_away_closes_the_upstream_request(page: str, upstream: tuple[Upstream, str]) -> None:
    scripted = upstream[0]
    scripted.closed.clear()
    with httpx.stream("POST", f"{page}/api/chat", json={"model": "endless", "messages": [
            {"role": "user", "content": "count"}]}, timeout=30) as response:
        lines = response.iter_lines()
        assert json.loads(next(lines))["type"] == "request"
        assert json.loads(next(lines))["type"] == "delta"
    # The browser's stop is exactly this: the connection to the chat server closes mid-answer.
    assert scripted.closed.wait(30), "the upstream stream was not abandoned after the client left"


def test_info_lists_the_models(page: str, upstream: tuple[Upstream, str]) -> None:
    info = httpx.get(f"{page}/api/info", timeout=30).json()
    assert info == {"url": upstream[1], "model": "mindie", "models": ["mindie"], "error": None, "warning": None}


def test_unreachable_service_is_named() -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens on it
        probe.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{probe.getsockname()[1]}"
    with serve(build_app(ChatSettings(business_url=dead, model="qwen"))) as url:
        info = httpx.get(f"{url}/api/info", timeout=30).json()
        assert info["models"] == [] and info["model"] == "qwen"
        assert info["error"].startswith(f"cannot reach the service at {dead}/v1/models: ")
        events = ask(url, "qwen")
        assert events[-1]["type"] == "error"
        assert events[-1]["message"].startswith(f"cannot reach the service at {dead}/v1/chat/completions: ")
        assert events[-1]["message"].endswith("(is MindIE running?)")


def test_requests_the_page_would_never_send_are_refused(page: str) -> None:
    as_text = httpx.post(f"{page}/api/chat", content=b'{"messages": []}', headers={"content-type": "text/plain"},
                         timeout=30)
    assert as_text.status_code == 415  # a cross-site form post cannot send application/json without a preflight
    bad = httpx.post(f"{page}/api/chat", json={"messages": [{"role": "user"}]}, timeout=30)
    assert bad.status_code == 400
    assert bad.json() == {"error": "bad chat request: messages[0]: expected {role: system|user|assistant, "
                                   "content: string}"}
    rebound = httpx.get(f"{page}/api/info", headers={"host": "attacker.example"}, timeout=30)
    assert rebound.status_code == 400  # DNS rebinding: only loopback names reach a loopback-bound page


def test_the_page_is_self_contained(page: str) -> None:
    response = httpx.get(page + "/", timeout=30)
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    html = response.text
    assert "http://" not in html and "https://" not in html and "//cdn" not in html
    assert "<script src" not in html and "<link" not in html


def test_the_wheel_ships_the_page(tmp_path: Path) -> None:
    """Built by the real build backend (hatchling, in the dev extra), as `pip install .` would."""
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, timeout=600, capture_output=True)
    wheel = next(tmp_path.glob("mindie_pack-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        shipped = archive.read("mindie_pack/chat/static/index.html")
    assert shipped == (REPO / "mindie_pack" / "chat" / "static" / "index.html").read_bytes()


def test_a_model_the_service_does_not_list_is_warned_about(upstream: tuple[Upstream, str]) -> None:
    with serve(build_app(ChatSettings(business_url=upstream[1], model="qwen"))) as url:
        info = httpx.get(f"{url}/api/info", timeout=30).json()
    assert (info["model"], info["models"], info["error"]) == ("qwen", ["mindie"], None)
    assert info["warning"] == f"model 'qwen' is not listed by {upstream[1]}/v1/models (['mindie'])"
