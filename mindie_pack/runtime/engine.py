"""`open_model(path)` (alias `load_runtime`): the CPU reference runtime over a model directory built for the ms
backend or a Hugging Face folder (atb/torch); implements api.Runtime."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mindie_pack.errors import PackError
from mindie_pack.runtime.api import GenerationParams, GenerationResult, TokenCallback
from mindie_pack.runtime.model import DecoderModel
from mindie_pack.runtime.sampling import next_token
from mindie_pack.runtime.tokenizer import TextTokenizer, eos_token_ids
from mindie_pack.runtime.weights import ModelSource, load_rank_weights, open_source

SUPPORTED_PROFILES = ("mf-ckpt", "mf-safetensors", "llm-boost", "hf")


class CpuRuntime:
    """Generates on CPU (numpy, tensor-parallel ranks computed in turn). One generation at a time (a lock
    serialises callers' threads)."""

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
            return self.model.forward(prompt, self.model.new_cache())

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
        cache = self.model.new_cache()
        logits = self.model.forward(prompt, cache, last_only=True)[-1]
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
                logits = self.model.forward([token], cache, last_only=True)[-1]
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


def open_model(path: Path, tp: int | None = None) -> CpuRuntime:
    """Open a model for generation on CPU.

    `path` is either a directory written by `mindie-pack build` for the ms backend (one .yaml; profiles mf-ckpt,
    llm-boost, mf-safetensors; tp comes from its yaml and each rank computes with its own rank file), or a
    Hugging Face folder (config.json + *.safetensors, as the atb/torch backends serve it), run with `tp` ranks
    (default 1) that split its tensors as MindIE's parallel layers do.
    """
    source = open_source(Path(path), tp)
    return _runtime(source)


def load_runtime(model_dir: Path) -> CpuRuntime:
    """The entry point of verify --run, `run` and the emulator: `open_model` with the directory's own tp."""
    return open_model(model_dir)


def _runtime(source: ModelSource) -> CpuRuntime:
    family, dims = source.model.family, source.model.dims
    if family.name == "baichuan2" and family.is_alibi(dims):  # type: ignore[attr-defined]
        raise PackError(f"{source.path / source.origin}: Baichuan2-13B (ALiBi attention) is not supported by the "
                        "CPU runtime")
    _check_memory(source)
    model = DecoderModel.from_rank_weights(dims, load_rank_weights(source), norm_head=family.name == "baichuan2",
                                           vocab_split=source.plan.embedding_split,
                                           head_split=source.plan.lm_head_split)
    tokenizer = TextTokenizer(source.path)
    return CpuRuntime(source.path, model, tokenizer, eos_token_ids(source.path, tokenizer))


def _check_memory(source: ModelSource) -> None:
    """Refuse a model whose float32 weights cannot fit, instead of being killed half-way by the OOM killer."""
    import psutil

    weights = sum(int(np.prod(spec.shape)) for spec in source.specs) * 4
    need = 2 * weights  # the shards as read, and their fused (in, out) copies while the ranks are assembled
    available = psutil.virtual_memory().available
    if need > available:
        raise PackError(f"{source.path}: the CPU runtime needs about {_size(need)} for this model's float32 "
                        f"weights, {_size(available)} is available (it runs small rehearsal models; use a tiny "
                        "model of the same family to rehearse)")


def _size(nbytes: int) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.1f} MiB"
