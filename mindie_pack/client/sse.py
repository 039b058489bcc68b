"""Server-sent events from an httpx streaming response (MindIE's `data: {...}` lines, blank-line separated)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx


def iter_sse_data(response: httpx.Response) -> Iterator[str]:
    for line in response.iter_lines():
        if line.startswith("data:"):
            yield line[5:].strip()


async def aiter_sse_data(response: httpx.Response) -> AsyncIterator[str]:
    async for line in response.aiter_lines():
        if line.startswith("data:"):
            yield line[5:].strip()
