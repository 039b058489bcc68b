"""A replay server for the transcripts in tests/fixtures/wire/ (MindIE 2.3.0's formats written from its response
builders), so smoke and bench can be driven without our emulator; plus servers that accept and never answer, or
stream keep-alive comments forever."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from deploy_helpers import free_port_block

FIXTURES = Path(__file__).parent / "fixtures" / "wire"

# http_handler.cpp:1227-1262: healthy -> 200 without a body; /metrics: prometheus text as application/json
# (http_handler.cpp:897-899), names from prometheus_metrics.cpp:85-149.
METRICS_TEXT = ("# HELP request_success_total Count of successfully processed requests.\n"
                "# TYPE request_success_total counter\n"
                'request_success_total{model_name="llama3"} 4\n')


def load_fixtures() -> list[dict[str, Any]]:
    return [json.loads(path.read_text()) | {"name": path.stem} for path in sorted(FIXTURES.glob("*.json"))]


def _stream_flag(path: str, body: dict[str, Any]) -> bool:
    if path == "/generate_stream":
        return True
    if path == "/generate" and "inputs" in body:
        return False  # TGI through /generate is never streamed
    return bool(body.get("stream", False))


def _max_tokens(body: dict[str, Any]) -> int | None:
    params = body.get("parameters") if isinstance(body.get("parameters"), dict) else {}
    value = body.get("max_tokens", params.get("max_new_tokens"))
    return value if isinstance(value, int) else None


def pick(fixtures: list[dict[str, Any]], method: str, path: str, body: dict[str, Any],
         variant: str | None) -> dict[str, Any] | None:
    """The transcript for a request: same method, path and stream flag; the one for the requested length, else
    the longest (a server that stopped early)."""
    stream = _stream_flag(path, body) if method == "POST" else None
    wanted = _max_tokens(body)
    candidates = [f for f in fixtures if f["request"]["method"] == method and f["request"]["path"] == path
                  and (stream is None or f["request"].get("stream") == stream)]
    with_variant = [f for f in candidates if f["request"].get("variant") == variant]
    candidates = with_variant or [f for f in candidates if "variant" not in f["request"]]
    if not candidates:
        return None
    exact = [f for f in candidates if f["request"].get("max_tokens") in (None, wanted)]
    return exact[0] if exact else max(candidates, key=lambda f: f["request"].get("max_tokens") or 0)


def replay_app(mode: str = "replay", variant: str | None = None) -> Starlette:
    fixtures = load_fixtures()

    async def endpoint(request: Request) -> Response:
        path = request.url.path
        if mode == "silent":  # accept, read the request, never answer
            await asyncio.Event().wait()
        if path in ("/health", "/v2/health/ready", "/v2/health/live"):
            return Response(status_code=200)
        if path == "/metrics":
            return Response(METRICS_TEXT, media_type="application/json")
        raw = await request.body()
        body = json.loads(raw) if raw else {}
        if mode == "keepalive-forever":
            async def comments() -> AsyncIterator[bytes]:
                while True:
                    yield b": keep-alive\n\n"
                    await asyncio.sleep(0.1)
            return StreamingResponse(comments(), media_type="text/event-stream")
        fixture = pick(fixtures, request.method, path, body, variant)
        if fixture is None:
            return Response(status_code=404)
        response = fixture["response"]
        if "frames" not in response:
            return Response(response["body"], status_code=response["status"], media_type=response["content_type"])

        async def frames() -> AsyncIterator[bytes]:
            for frame in response["frames"]:
                yield frame.encode()
                await asyncio.sleep(0.001)
        return StreamingResponse(frames(), status_code=response["status"], media_type=response["content_type"])

    return Starlette(routes=[Route("/{path:path}", endpoint, methods=["GET", "POST"])])


@contextmanager
def serving(app: Starlette) -> Iterator[str]:
    """The app on 127.0.0.1 in a thread (real HTTP over loopback); stopped on exit."""
    port = free_port_block(1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="off",
                                           timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the replay server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=15)
