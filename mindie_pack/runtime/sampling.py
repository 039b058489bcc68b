"""Choosing the next token from logits: greedy, or sampling with HF's order of logits processors
(repetition penalty -> temperature -> top-k -> top-p)."""

from __future__ import annotations

import numpy as np

from mindie_pack.runtime.api import GenerationParams


def apply_repetition_penalty(logits: np.ndarray, seen: list[int], penalty: float) -> np.ndarray:
    if penalty == 1.0 or not seen:
        return logits
    logits = logits.copy()
    ids = np.unique(np.asarray(seen, dtype=np.int64))
    values = logits[ids]
    logits[ids] = np.where(values < 0, values * penalty, values / penalty)
    return logits


def next_token(logits: np.ndarray, seen: list[int], params: GenerationParams, rng: np.random.Generator) -> int:
    logits = apply_repetition_penalty(logits.astype(np.float64), seen, params.repetition_penalty)
    if not params.do_sample:
        return int(np.argmax(logits))
    logits = logits / max(params.temperature, 1e-5)
    if params.top_k > 0 and params.top_k < logits.size:
        kth = np.partition(logits, -params.top_k)[-params.top_k]
        logits = np.where(logits < kth, -np.inf, logits)
    probs = np.exp(logits - logits.max())
    probs /= probs.sum()
    if params.top_p < 1.0:
        order = np.argsort(-probs, kind="stable")
        cumulative = np.cumsum(probs[order])
        keep = cumulative - probs[order] < params.top_p  # always keeps the most likely token
        mask = np.zeros_like(probs, dtype=bool)
        mask[order[keep]] = True
        probs = np.where(mask, probs, 0.0)
        probs /= probs.sum()
    return int(rng.choice(probs.size, p=probs))
