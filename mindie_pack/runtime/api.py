"""The contract between the CPU reference runtime and its users (verify --run, `run`, the emulator).

The runtime package implements `load_runtime(model_dir) -> Runtime`; consumers depend only on these types.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Protocol

FinishReason = Literal["eos", "stop", "length"]


@dataclass(frozen=True)
class GenerationParams:
    max_new_tokens: int = 16
    do_sample: bool = False
    temperature: float = 1.0
    top_k: int = 0  # 0 = off
    top_p: float = 1.0  # 1.0 = off
    seed: int | None = None
    repetition_penalty: float = 1.0
    stop: tuple[str, ...] = ()
    ignore_eos: bool = False


@dataclass
class GenerationResult:
    prompt_token_ids: list[int]
    token_ids: list[int] = field(default_factory=list)
    text: str = ""
    finish_reason: FinishReason = "length"


# Called once per generated token: (index of the prompt in the batch, token id, text piece decoded so far).
TokenCallback = Callable[[int, int, str], None]


class Runtime(Protocol):
    model_dir: Path
    eos_token_ids: tuple[int, ...]

    def encode(self, text: str) -> list[int]: ...

    def decode(self, token_ids: list[int]) -> str: ...

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str: ...

    def generate(
        self,
        prompts: list[list[int]],
        params: GenerationParams,
        on_token: TokenCallback | None = None,
    ) -> list[GenerationResult]: ...
