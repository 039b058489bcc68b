"""`load_runtime(model_dir)`: the CPU reference runtime over a built model directory (implements api.Runtime)."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mindie_pack.builder.model_dir import open_model_dir
from mindie_pack.errors import PackError
from mindie_pack.runtime.api import GenerationParams, GenerationResult, TokenCallback
from mindie_pack.runtime.context import configure_cpu
from mindie_pack.runtime.model import DecoderModel, KVCache
from mindie_pack.runtime.sampling import next_token
from mindie_pack.runtime.tokenizer import TextTokenizer, eos_token_ids
from mindie_pack.runtime.weights import load_full_weights

SUPPORTED_PROFILES = ("mf-ckpt", "mf-safetensors", "llm-boost")


class CpuRuntime:
    """Generates with MindSpore on CPU. One generation at a time (a lock serialises callers' threads)."""

    def __init__(self, model_dir: Path, model: DecoderModel, tokenizer: TextTokenizer,
                 eos_ids: tuple[int, ...]) -> None:
        self.model_dir = model_dir
        self.model = model
        self.tokenizer = tokenizer
        self.eos_token_ids = eos_ids
        self._lock = threading.Lock()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, token_ids: list[int]) -> str:
        return self.tokenizer.decode(token_ids)

    def apply_chat_template(self, messages: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(messages)

    def prompt_logits(self, prompt: list[int]) -> np.ndarray:
        """Logits for every position of the prompt (one prefill)."""
        with self._lock:
            return self.model.forward(prompt, KVCache.empty(len(self.model.layers)))

    def generate(self, prompts: list[list[int]], params: GenerationParams,
                 on_token: TokenCallback | None = None) -> list[GenerationResult]:
        # The sequences of a batch are decoded one after the other: exact, and simple on 2 CPU cores.
        with self._lock:
            return [self._generate_one(i, prompt, params, on_token) for i, prompt in enumerate(prompts)]

    def _generate_one(self, index: int, prompt: list[int], params: GenerationParams,
                      on_token: TokenCallback | None) -> GenerationResult:
        if not prompt:
            raise PackError("generate: empty prompt (no tokens)")
        result = GenerationResult(prompt_token_ids=list(prompt))
        rng = np.random.default_rng(params.seed)
        cache = KVCache.empty(len(self.model.layers))
        logits = self.model.forward(prompt, cache)[-1]
        emitted = ""
        for step in range(params.max_new_tokens):
            token = next_token(logits, prompt + result.token_ids, params, rng)
            result.token_ids.append(token)
            is_eos = token in self.eos_token_ids and not params.ignore_eos
            text = self.tokenizer.decode(result.token_ids[:-1] if is_eos else result.token_ids)
            stop_at = None if is_eos else _first_stop(text, params.stop)
            if stop_at is not None:
                text = text[:stop_at]
            final = is_eos or stop_at is not None or step == params.max_new_tokens - 1
            # Hold back a partial UTF-8 character (decoded as U+FFFD) until the next token completes it.
            piece = text[len(emitted):] if final or not text.endswith("\ufffd") else ""
            if on_token is not None:
                on_token(index, token, piece)
            emitted += piece
            if is_eos:
                result.finish_reason = "eos"
                break
            if stop_at is not None:
                result.finish_reason = "stop"
                break
            if not final:
                logits = self.model.forward([token], cache)[-1]
        result.text = _final_text(self.tokenizer, result, params)
        return result


def _first_stop(text: str, stops: Sequence[str]) -> int | None:
    positions = [text.find(s) for s in stops if s and s in text]
    return min(positions) if positions else None


def _final_text(tokenizer: TextTokenizer, result: GenerationResult, params: GenerationParams) -> str:
    ids = result.token_ids[:-1] if result.finish_reason == "eos" else result.token_ids
    text = tokenizer.decode(ids)
    stop_at = _first_stop(text, params.stop)
    return text[:stop_at] if stop_at is not None else text


def load_runtime(model_dir: Path) -> CpuRuntime:
    """Load a directory written by `mindie-pack build` (profiles mf-ckpt, mf-safetensors, llm-boost)."""
    configure_cpu()
    from mindie_pack.builder.hf_profile import is_hf_layout, open_hf_layout

    # atb/torch directories are HF folders: a minimal adapter until the runtime reads them itself.
    built = open_hf_layout(Path(model_dir)) if is_hf_layout(Path(model_dir)) else open_model_dir(Path(model_dir))
    family = built.model.family
    if family.name == "baichuan2" and family.is_alibi(built.model.dims):  # type: ignore[attr-defined]
        raise PackError(f"{built.yaml_path}: Baichuan2-13B (ALiBi attention) is not supported by the CPU runtime")
    weights = load_full_weights(built)
    model = DecoderModel.from_weights(built.model.dims, weights, norm_head=family.name == "baichuan2")
    tokenizer = TextTokenizer(built.path)
    return CpuRuntime(built.path, model, tokenizer, eos_token_ids(built.path, tokenizer))
