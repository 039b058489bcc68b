"""The one stream decoder for every MindIE streaming API (used by smoke and bench).

It handles every shape the real server sends (see `format.py` for the sources): server-sent events (`data: ...`
frames, `: keep-alive` comment lines, `data: [DONE]`), vLLM's NUL-separated JSON, TGI final events that carry the
last token together with `generated_text`, /infer final events whose token has `text: null` (the last piece is then
the tail of `generated_text`), OpenAI chunks whose last content chunk carries finish_reason and usage, and events
that carry several tokens' text at once. Token counts come from the server (usage / details) when it sends them.

Written by hand because no SSE library also speaks vLLM's NUL framing and MindIE's per-API final events; the
framing itself is a few lines.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any


def split_frames(buffer: str, framing: str) -> tuple[list[str], str]:
    """Complete frames in `buffer` and the unfinished rest. SSE frames are lines; vLLM frames end with NUL."""
    sep = "\0" if framing == "nul" else "\n"
    *done, rest = buffer.split(sep)
    return [d.rstrip("\r") for d in done], rest


@dataclass
class StreamResult:
    api: str
    pieces: list[str] = field(default_factory=list)  # the text of each output-carrying event
    event_times: list[float] = field(default_factory=list)  # arrival time of each output-carrying event
    token_ids: list[int] = field(default_factory=list)
    events: list[Any] = field(default_factory=list)  # every decoded payload (dicts, or "[DONE]")
    keepalives: int = 0
    done_marker: bool = False
    finished: bool = False  # a final event (generated_text / finish_reason) or [DONE] was seen
    generated_text: str | None = None  # the server's full text (TGI / infer final event)
    finish_reason: str | None = None
    output_tokens: int | None = None  # the server's count (usage.completion_tokens / details.generated_tokens)
    prompt_tokens: int | None = None
    problems: list[str] = field(default_factory=list)  # the stream cannot be read (not JSON, no text list...)
    mismatch: str | None = None  # the final generated_text is not the streamed pieces joined

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    @property
    def received_tokens(self) -> int:
        """Tokens received: the server's own count, else one per token id, else one per output event."""
        if self.output_tokens is not None:
            return self.output_tokens
        return len(self.token_ids) or len(self.event_times)

    @property
    def first_output(self) -> float | None:
        return self.event_times[0] if self.event_times else None


class StreamDecoder:
    """Feed it the response text as it arrives (`feed`), then `close()`; read `result`."""

    def __init__(self, api: str) -> None:
        self.api = api
        self.framing = "nul" if api == "vllm" else "sse"
        self.result = StreamResult(api)
        self._buffer = ""
        self._data: list[str] = []

    # -- framing ---------------------------------------------------------------------------------------------
    def feed(self, chunk: str, now: float) -> int:
        """Decode what `chunk` completes; returns how many output-carrying events it held."""
        before = len(self.result.event_times)
        frames, self._buffer = split_frames(self._buffer + chunk, self.framing)
        for frame in frames:
            self._frame(frame, now)
        return len(self.result.event_times) - before

    def close(self, now: float) -> StreamResult:
        if self._buffer:
            self._frame(self._buffer, now)
            self._buffer = ""
        if self.framing == "sse" and self._data:
            self._dispatch(now)
        if self.framing == "nul" and self.result.events:
            self.result.finished = True  # vLLM's stream simply ends after the last piece
        return self.result

    def _frame(self, frame: str, now: float) -> None:
        if self.framing == "nul":
            if frame.strip():
                self._payload(frame, now)
            return
        if frame == "":
            if self._data:
                self._dispatch(now)
        elif frame.startswith(":"):
            self.result.keepalives += 1  # an SSE comment: keep-alive
        elif frame.startswith("data:"):
            value = frame[5:]
            self._data.append(value[1:] if value.startswith(" ") else value)
        # other SSE fields (event:, id:, retry:) carry nothing MindIE uses

    def _dispatch(self, now: float) -> None:
        payload, self._data = "\n".join(self._data), []
        self._payload(payload, now)

    # -- payloads ----------------------------------------------------------------------------------------------
    def _payload(self, payload: str, now: float) -> None:
        result = self.result
        if payload.strip() == "[DONE]":
            result.events.append("[DONE]")
            result.done_marker = result.finished = True
            return
        try:
            event = json.loads(payload)
        except ValueError:
            result.problems.append(f"an event is not JSON: {payload[:120]!r}")
            return
        result.events.append(event)
        if not isinstance(event, dict):
            result.problems.append(f"an event is not a JSON object: {payload[:120]!r}")
            return
        if self.api in ("tgi", "infer"):
            self._token_event(event, now)
        elif self.api == "vllm":
            texts = event.get("text")
            piece = texts[0] if isinstance(texts, list) and texts and isinstance(texts[0], str) else None
            if piece is None:
                result.problems.append(f"a vLLM chunk has no text list: {payload[:120]!r}")
                return
            self._output(piece, now)
        else:
            self._openai_chunk(event, now)

    def _output(self, piece: str, now: float) -> None:
        self.result.pieces.append(piece)
        self.result.event_times.append(now)

    def _token_event(self, event: dict[str, Any], now: float) -> None:
        result = self.result
        token = event.get("token")
        final_text = event.get("generated_text")
        if isinstance(token, dict) and token.get("id") is not None:
            if isinstance(token["id"], int):
                result.token_ids.append(token["id"])
            piece = token.get("text")
            if not isinstance(piece, str):
                # /infer's final event: the last token's text is only in generated_text
                sofar = result.text
                piece = final_text[len(sofar):] if isinstance(final_text, str) and final_text.startswith(sofar) \
                    else ""
            self._output(piece, now)
        if isinstance(final_text, str):
            result.finished = True
            result.generated_text = final_text
            if result.text != final_text:
                result.mismatch = f"generated_text differs from the streamed tokens ({final_text!r} vs " \
                    f"{result.text!r})"
        details = event.get("details")
        if isinstance(details, dict):
            if isinstance(details.get("generated_tokens"), int):
                result.output_tokens = details["generated_tokens"]
            if isinstance(details.get("prompt_tokens"), int):
                result.prompt_tokens = details["prompt_tokens"]
            if isinstance(details.get("finish_reason"), str):
                result.finish_reason = details["finish_reason"]

    def _openai_chunk(self, event: dict[str, Any], now: float) -> None:
        result = self.result
        choices = event.get("choices")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict):
            choice = choices[0]
            if self.api == "openai-chat":
                delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
                piece = delta.get("content")
            else:
                piece = choice.get("text")
            if isinstance(piece, str) and piece:
                self._output(piece, now)
            if choice.get("finish_reason") is not None:
                result.finish_reason = str(choice["finish_reason"])
                result.finished = True
        usage = event.get("usage")
        if isinstance(usage, dict):
            if isinstance(usage.get("completion_tokens"), int):
                result.output_tokens = usage["completion_tokens"]
            if isinstance(usage.get("prompt_tokens"), int):
                result.prompt_tokens = usage["prompt_tokens"]


def decode_all(api: str, chunks: Iterator[str] | list[str], now: float = 0.0) -> StreamResult:
    """Decode a whole transcript at once (tests, replay)."""
    decoder = StreamDecoder(api)
    for chunk in chunks:
        decoder.feed(chunk, now)
    return decoder.close(now)
