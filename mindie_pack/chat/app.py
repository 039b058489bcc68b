"""The chat page's server: the static page, the target's models, and a streaming proxy to MindIE.

The browser never talks to MindIE itself: MindIE sends no CORS headers, so a page served from another origin
could not read its answers. The proxy also measures time from the upstream request, turns every failure into
text (service down, 4xx/5xx body, stream cut, timeout) and closes the upstream request when the browser stops.

Page <-> proxy (`POST /api/chat`, answered as NDJSON, one JSON object a line):
  {"type": "request", "url", "model", "body", "curl"}       first, before the upstream request is sent
  {"type": "delta", "content", "reasoning", "t_ms"}          each text piece; t_ms since the upstream request
  {"type": "done", "finish_reason", "usage", "chunks", "content_chunks", "t_ms", "notes"}
  {"type": "error", "message", "status", "body", "t_ms"}     instead of "done"; status/body for HTTP errors
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mindie_pack.chat.request import BadChatRequest, build_chat_request
from mindie_pack.chat.stream import StreamError, StreamState, error_text, sse_payloads

MODELS_PATH = "/v1/models"
ERROR_BODY_LIMIT = 4000  # characters of an upstream error body passed to the page
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1", "[::1]")
# The page is self-contained: nothing may load from elsewhere, and it may only call its own server.
CSP = ("default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; "
       "img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")


@dataclass(frozen=True)
class ChatSettings:
    business_url: str
    model: str | None = None
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 300.0  # the longest wait for the next chunk (prefill of a long prompt included)
    models_timeout_s: float = 10.0
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS  # Host headers accepted ("*" when shared on 0.0.0.0)


def page_html() -> str:
    return resources.files("mindie_pack.chat").joinpath("static", "index.html").read_text(encoding="utf-8")


def _line(obj: dict[str, Any]) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode()


def _describe(exc: httpx.HTTPError, url: str, settings: ChatSettings) -> str:
    """One sentence for an httpx failure, naming the URL and the wait that ran out."""
    if isinstance(exc, httpx.ConnectTimeout):
        return f"cannot reach the service at {url}: no connection within {settings.connect_timeout_s:g} s"
    if isinstance(exc, httpx.ConnectError):
        return f"cannot reach the service at {url}: {exc or 'connection failed'} (is MindIE running?)"
    if isinstance(exc, httpx.ReadTimeout):
        return f"the service at {url} sent nothing for {settings.read_timeout_s:g} s (read timeout)"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out talking to the service at {url}: {type(exc).__name__}"
    return f"the connection to the service at {url} failed: {exc or type(exc).__name__}"


def _http_error(status: int, text: str, url: str) -> dict[str, Any]:
    try:
        message = error_text(json.loads(text))
    except ValueError:
        message = None
    summary = message or text.strip()[:300] or "(empty body)"
    return {"type": "error", "status": status, "body": text[:ERROR_BODY_LIMIT],
            "message": f"the service answered HTTP {status} to {url}: {summary}"}


async def list_models(client: httpx.AsyncClient, settings: ChatSettings) -> tuple[list[str], str | None]:
    """The model ids from the service's /v1/models, or an error text."""
    url = settings.business_url + MODELS_PATH
    try:
        response = await client.get(url, timeout=settings.models_timeout_s)
    except httpx.HTTPError as exc:
        return [], _describe(exc, url, settings)
    if response.status_code != 200:
        return [], _http_error(response.status_code, response.text, url)["message"]
    try:
        data = response.json()["data"]
        ids = [str(m["id"]) for m in data]
    except (ValueError, KeyError, TypeError):
        return [], f"{url} answered with something that is not a model list: {response.text[:200]!r}"
    if not ids:
        return [], f"{url} lists no model"
    return ids, None


def build_app(settings: ChatSettings) -> Starlette:
    clients: list[httpx.AsyncClient] = []

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        # trust_env=False: an HTTP(S)_PROXY meant for the internet must not capture traffic to the service.
        timeout = httpx.Timeout(connect=settings.connect_timeout_s, read=settings.read_timeout_s,
                                write=settings.read_timeout_s, pool=settings.connect_timeout_s)
        async with httpx.AsyncClient(timeout=timeout, trust_env=False) as client:
            clients.append(client)
            yield
            clients.clear()

    async def index(_: Request) -> Response:
        return HTMLResponse(page_html(), headers={"Cache-Control": "no-store", "Content-Security-Policy": CSP,
                                                  "X-Content-Type-Options": "nosniff"})

    async def info(_: Request) -> Response:
        models, error = await list_models(clients[0], settings)
        model = settings.model or (models[0] if models else None)
        warning = None
        if settings.model and models and settings.model not in models:
            warning = f"model {settings.model!r} is not listed by {settings.business_url}{MODELS_PATH} ({models})"
        return JSONResponse({"url": settings.business_url, "model": model, "models": models, "error": error,
                             "warning": warning}, headers={"Cache-Control": "no-store"})

    async def chat(request: Request) -> Response:
        # JSON only: a cross-site form post cannot send it without a CORS preflight, which we never grant.
        if request.headers.get("content-type", "").split(";")[0].strip() != "application/json":
            return JSONResponse({"error": "send the chat request as application/json"}, status_code=415)
        try:
            fields = json.loads(await request.body())
        except ValueError as exc:
            return JSONResponse({"error": f"the request is not JSON: {exc}"}, status_code=400)
        client = clients[0]
        model = fields.get("model") if isinstance(fields, dict) else None
        if not model and not settings.model:
            models, error = await list_models(client, settings)
            if error:
                return JSONResponse({"error": error}, status_code=502)
            model = models[0]
        try:
            upstream = build_chat_request(settings.business_url, fields, model or settings.model)
        except BadChatRequest as exc:
            return JSONResponse({"error": f"bad chat request: {exc}"}, status_code=400)
        return StreamingResponse(proxy(client, upstream.url, upstream.body, upstream.curl()),
                                 media_type="application/x-ndjson",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def proxy(client: httpx.AsyncClient, url: str, body: dict[str, Any], curl: str) -> AsyncIterator[bytes]:
        yield _line({"type": "request", "url": url, "model": body["model"], "body": body, "curl": curl})
        start = time.perf_counter()

        def elapsed() -> float:
            return round((time.perf_counter() - start) * 1000, 3)

        state = StreamState()
        try:
            # Leaving this block for any reason (end, error, or the browser's stop cancelling this generator)
            # closes the upstream response and its connection, so MindIE stops generating for us.
            async with client.stream("POST", url, json=body) as response:
                if response.status_code != 200:
                    text = (await response.aread()).decode("utf-8", "replace")
                    yield _line({**_http_error(response.status_code, text, url), "t_ms": elapsed()})
                    return
                async for data in sse_payloads(response.aiter_lines()):
                    piece = state.feed(data)
                    if piece is None:  # [DONE]
                        break
                    if piece.content or piece.reasoning:
                        yield _line({"type": "delta", "content": piece.content, "reasoning": piece.reasoning,
                                     "t_ms": elapsed()})
            problem = state.end_problem()
        except StreamError as exc:
            problem = str(exc)
        except (httpx.RemoteProtocolError, httpx.ReadError) as exc:
            problem = (f"the stream was cut after {state.chunks} chunk(s): the connection to {url} broke "
                       f"({exc or type(exc).__name__})")
        except httpx.HTTPError as exc:
            problem = _describe(exc, url, settings)
        if problem:
            yield _line({"type": "error", "message": problem, "status": None, "body": None, "t_ms": elapsed(),
                         "chunks": state.chunks})
            return
        yield _line({"type": "done", "finish_reason": state.finish_reason, "usage": state.usage,
                     "chunks": state.chunks, "content_chunks": state.content_chunks, "t_ms": elapsed(),
                     "notes": state.notes})

    async def no_icon(_: Request) -> Response:
        return Response(status_code=204)  # browsers ask for it; an answer keeps the console free of 404s

    routes = [Route("/", index), Route("/api/info", info), Route("/api/chat", chat, methods=["POST"]),
              Route("/favicon.ico", no_icon)]
    middleware = [Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts))]
    return Starlette(routes=routes, middleware=middleware, lifespan=lifespan)
