"""Bounded HTTP for smoke and bench: connect/read timeouts plus a per-request deadline that also ends streams which
send nothing but keep-alive comments. A request past its deadline fails with one line: "no answer in N s"."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx

from mindie_pack.client.endpoints import DEFAULT_DEADLINE_S  # noqa: F401 - its home is light for --help
from mindie_pack.wire.stream import StreamDecoder, StreamResult

CONNECT_TIMEOUT_S = 5.0


class NoAnswer(Exception):
    """The server did not finish answering within the deadline."""

    def __init__(self, seconds: float, what: str = "") -> None:
        self.seconds = seconds
        super().__init__(f"{what + ': ' if what else ''}no answer in {seconds:g} s")


class HttpStatusError(Exception):
    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"answered {status}: {body[:300]}")


def timeouts(deadline_s: float) -> httpx.Timeout:
    """Connect quickly or fail; no single read, write or pool wait longer than the whole request may take."""
    return httpx.Timeout(connect=min(CONNECT_TIMEOUT_S, deadline_s), read=deadline_s, write=deadline_s,
                         pool=deadline_s)


def stream_sync(client: httpx.Client, url: str, body: dict[str, Any], api: str, deadline_s: float,
                clock: Callable[[], float] = time.perf_counter) -> StreamResult:
    """POST and decode a stream within `deadline_s` (raises NoAnswer, HttpStatusError or httpx.HTTPError)."""
    decoder = StreamDecoder(api)
    end = time.monotonic() + deadline_s
    try:
        with client.stream("POST", url, json=body, timeout=timeouts(deadline_s)) as response:
            if response.status_code != 200:
                response.read()
                raise HttpStatusError(response.status_code, response.text)
            for chunk in response.iter_text():
                decoder.feed(chunk, clock())
                if time.monotonic() > end:  # e.g. keep-alive comments forever
                    raise NoAnswer(deadline_s)
    except httpx.ConnectTimeout:
        raise
    except httpx.TimeoutException:
        raise NoAnswer(deadline_s) from None
    return decoder.close(clock())


async def stream_async(client: httpx.AsyncClient, url: str, body: dict[str, Any], api: str, deadline_s: float,
                       clock: Callable[[], float] = time.perf_counter) -> StreamResult:
    decoder = StreamDecoder(api)

    try:
        async with asyncio.timeout(deadline_s):  # no extra task per request (cheaper than wait_for)
            async with client.stream("POST", url, json=body, timeout=timeouts(deadline_s)) as response:
                if response.status_code != 200:
                    await response.aread()
                    raise HttpStatusError(response.status_code, response.text)
                async for chunk in response.aiter_text():
                    decoder.feed(chunk, clock())
            return decoder.close(clock())
    except httpx.ConnectTimeout:
        raise
    except (TimeoutError, httpx.TimeoutException):
        raise NoAnswer(deadline_s) from None


def request_sync(client: httpx.Client, method: str, url: str, deadline_s: float,
                 body: dict[str, Any] | None = None) -> httpx.Response:
    """A bounded non-streamed request: the whole body must arrive within `deadline_s` (also when the server keeps
    sending bytes that never complete it)."""
    end = time.monotonic() + deadline_s
    try:
        with client.stream(method, url, json=body, timeout=timeouts(deadline_s)) as response:
            chunks = []
            for chunk in response.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > end:
                    raise NoAnswer(deadline_s)
            headers = [(k, v) for k, v in response.headers.items() if k.lower() not in ("content-encoding",
                                                                                        "transfer-encoding")]
            return httpx.Response(response.status_code, headers=headers, content=b"".join(chunks),
                                  request=response.request)
    except httpx.ConnectTimeout:
        raise
    except httpx.TimeoutException:
        raise NoAnswer(deadline_s) from None
