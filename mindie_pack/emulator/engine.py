"""What answers requests inside the emulator: the CPU runtime on the model directory, or a fake model.

Both stream tokens into asyncio: the runtime runs in a worker thread (one generation at a time, as on one NPU
without batching); the fake model is pure asyncio so many requests proceed concurrently, like continuous batching.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from mindie_pack.runtime.api import GenerationParams, GenerationResult


@dataclass
class TokenEvent:
    token_id: int
    text: str  # the new piece of text
    elapsed_s: float  # since the request started
    last: bool | None = None  # True/False when the engine knows whether this is the last token; None: unknown


@dataclass
class DoneEvent:
    result: GenerationResult
    prefill_s: float
    total_s: float


class Engine(Protocol):
    model_dir: Path | None
    torch_dtype: str

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: list[int]) -> str: ...

    def chat_prompt(self, messages: list[dict[str, str]]) -> str: ...

    def stream(self, prompt: list[int], params: GenerationParams) -> AsyncIterator[TokenEvent | DoneEvent]: ...


class RuntimeEngine:
    def __init__(self, model_dir: Path) -> None:
        from mindie_pack.runtime import load_runtime

        self.model_dir = model_dir
        self.runtime = load_runtime(model_dir)
        import json

        self.torch_dtype = str(json.loads((model_dir / "config.json").read_text()).get("torch_dtype", "bfloat16"))
        self._lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        return self.runtime.encode(text)

    def decode(self, token_ids: list[int]) -> str:
        return self.runtime.decode(token_ids)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return self.runtime.apply_chat_template(messages)

    async def stream(self, prompt: list[int], params: GenerationParams) -> AsyncIterator[TokenEvent | DoneEvent]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[TokenEvent | DoneEvent | BaseException] = asyncio.Queue()
        start = time.perf_counter()
        first: list[float] = []

        count = [0]
        eos_ids = set(getattr(self.runtime, "eos_token_ids", ()))

        def on_token(_: int, token: int, piece: str) -> None:
            now = time.perf_counter() - start
            if not first:
                first.append(now)
            count[0] += 1
            # The last token is known at once unless stop strings may end the text (then: unknown, None).
            last: bool | None = count[0] >= params.max_new_tokens or (token in eos_ids and not params.ignore_eos)
            if not last and params.stop:
                last = None
            loop.call_soon_threadsafe(queue.put_nowait, TokenEvent(token, piece, now, last=last))

        def work() -> None:
            try:
                with self._lock:
                    result = self.runtime.generate([prompt], params, on_token)[0]
                total = time.perf_counter() - start
                loop.call_soon_threadsafe(queue.put_nowait, DoneEvent(result, first[0] if first else total, total))
            except BaseException as exc:  # surfaced to the request as a 500
                loop.call_soon_threadsafe(queue.put_nowait, exc)

        threading.Thread(target=work, daemon=True).start()
        while True:
            item = await queue.get()
            if isinstance(item, BaseException):
                raise item
            yield item
            if isinstance(item, DoneEvent):
                return


class FakeEngine:
    """No weights: deterministic words, with configurable prefill and per-token delays."""

    WORDS = ("alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet")

    def __init__(self, prefill_ms: float = 0.0, per_token_ms: float = 0.0) -> None:
        self.model_dir = None
        self.torch_dtype = "float16"
        self.prefill_s = prefill_ms / 1000
        self.per_token_s = per_token_ms / 1000

    def encode(self, text: str) -> list[int]:
        return [len(word) % 1000 + 10 for word in text.split()] or [10]

    def decode(self, token_ids: list[int]) -> str:
        return "".join(" " + self.WORDS[t % len(self.WORDS)] for t in token_ids)

    def chat_prompt(self, messages: list[dict[str, str]]) -> str:
        return "\n".join(f"{m.get('role')}: {m.get('content')}" for m in messages) + "\nassistant:"

    async def stream(self, prompt: list[int], params: GenerationParams) -> AsyncIterator[TokenEvent | DoneEvent]:
        start = time.perf_counter()
        result = GenerationResult(prompt_token_ids=list(prompt))
        seed = sum(prompt) + len(prompt)
        await asyncio.sleep(self.prefill_s)
        prefill = time.perf_counter() - start
        for index in range(params.max_new_tokens):
            if index:
                await asyncio.sleep(self.per_token_s)
            token = (seed + index) % len(self.WORDS)
            result.token_ids.append(token)
            yield TokenEvent(token, self.decode([token]), time.perf_counter() - start,
                             last=index == params.max_new_tokens - 1)
        result.text = self.decode(result.token_ids)
        result.finish_reason = "length"
        yield DoneEvent(result, prefill, time.perf_counter() - start)
