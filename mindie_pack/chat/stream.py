"""MindIE's OpenAI chat stream (`POST /v1/chat/completions` with `stream: true`), read chunk by chunk.

Two shapes arrive and both are handled (the page never needs to know which one it got):

- real MindIE 2.3.0 (`src/server/endpoint/single_req_infer_interface/single_req_vllm_openai_infer_interface.cpp`
  at 40fb0630): a first chunk `delta: {"role": "assistant", "content": ""}` (:1039-1058), then every chunk
  repeats `role` next to its `content` piece (:1117), the LAST CONTENT CHUNK carries `finish_reason` and
  `usage` (:1153-1180), then `data: [DONE]` (:1188). `delta.reasoning_content` carries reasoning text (:1124).
- the OpenAI/vLLM shape (and mindie-pack's emulator before it followed the real one): content chunks without
  `role`, then a separate chunk with an empty delta, `finish_reason` and `usage`, then `data: [DONE]`.
  OpenAI's `include_usage` variant sends usage in a last chunk with `choices: []`.

Errors can arrive inside the stream as `data: {"error": ...}` (MindIE's error body, or OpenAI's nested
`{"error": {"message": ...}}`); they end the answer with that text.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

DONE = "[DONE]"


async def sse_payloads(lines: AsyncIterable[str]) -> AsyncIterator[str]:
    """Server-sent events framing: `data:` lines up to a blank line make one payload (several are joined with a
    newline), `:` lines are comments (keep-alives), other fields are ignored; an unterminated last event is kept.
    A few lines by hand: the proxy needs the payloads as they arrive, nothing else of an SSE client."""
    data: list[str] = []
    async for line in lines:
        if line == "":
            if data:
                yield "\n".join(data)
                data = []
        elif line.startswith("data:"):
            value = line[5:]
            data.append(value[1:] if value.startswith(" ") else value)
    if data:
        yield "\n".join(data)


class StreamError(Exception):
    """The stream said something that is not a chat chunk, or reported an error itself."""


@dataclass
class ChunkPiece:
    """What one `data:` line contributes to the answer."""

    content: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None


def error_text(body: Any) -> str | None:
    """The message of a MindIE (`{"error": "...", "error_type": "..."}`) or OpenAI (`{"error": {...}}`) error."""
    if not isinstance(body, dict) or "error" not in body or body.get("error") is None:
        return None
    error = body["error"]
    if isinstance(error, dict):
        message = error.get("message") or json.dumps(error, ensure_ascii=False)
        kind = error.get("type") or body.get("error_type")
    else:
        message, kind = str(error), body.get("error_type")
    return f"{kind}: {message}" if kind else str(message)


def parse_chunk(data: str) -> ChunkPiece | None:
    """One `data:` payload -> its piece of the answer; None for the `[DONE]` terminator."""
    if data.strip() == DONE:
        return None
    try:
        body = json.loads(data)
    except json.JSONDecodeError:
        raise StreamError(f"the service sent a stream line that is not JSON: {data[:200]!r}") from None
    message = error_text(body)
    if message is not None:
        raise StreamError(f"the service reported an error in the stream: {message}")
    if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
        raise StreamError(f"the service sent a stream chunk without `choices`: {data[:200]}")
    piece = ChunkPiece(usage=body.get("usage") if isinstance(body.get("usage"), dict) else None)
    if body["choices"]:
        choice = body["choices"][0]
        if not isinstance(choice, dict):
            raise StreamError(f"the service sent a stream chunk with a malformed choice: {data[:200]}")
        delta = choice.get("delta") or {}
        if not isinstance(delta, dict):
            raise StreamError(f"the service sent a stream chunk whose `delta` is not an object: {data[:200]}")
        piece.content = delta.get("content") or ""
        piece.reasoning = delta.get("reasoning_content") or ""
        piece.finish_reason = choice.get("finish_reason")
    return piece


@dataclass
class StreamState:
    """What has been seen so far in one stream: decides whether the stream ended properly."""

    chunks: int = 0
    content_chunks: int = 0
    text: str = ""
    finish_reason: str | None = None
    usage: dict[str, Any] | None = None
    done: bool = False
    notes: list[str] = field(default_factory=list)

    def feed(self, data: str) -> ChunkPiece | None:
        """Account for one `data:` payload; returns its piece (None for `[DONE]`). Raises StreamError."""
        if self.done:
            raise StreamError(f"the service sent data after [DONE]: {data[:200]!r}")
        piece = parse_chunk(data)
        if piece is None:
            self.done = True
            return None
        self.chunks += 1
        if piece.content or piece.reasoning:
            self.content_chunks += 1
            self.text += piece.content
        if piece.finish_reason:
            self.finish_reason = piece.finish_reason
        if piece.usage is not None:
            self.usage = piece.usage
        return piece

    def end_problem(self) -> str | None:
        """Called when the upstream body ended: why this is not a complete answer, or None if it is."""
        if self.done:
            return None
        if self.finish_reason is not None:
            # Complete (finish_reason seen) but the terminator is missing: say so, keep the answer.
            self.notes.append("the stream ended without `data: [DONE]`")
            return None
        return (f"the stream was cut after {self.chunks} chunk(s): the service closed it without a finish_reason "
                "or `data: [DONE]`")
