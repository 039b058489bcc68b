"""Rotary embedding frequencies, incl. HF's rope_scaling variants (llama3, linear, dynamic NTK)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from mindie_pack.errors import PackError


def inverse_frequencies(head_dim: int, theta: float, rope_scaling: dict[str, Any] | None) -> np.ndarray:
    inv = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim))
    kind = (rope_scaling or {}).get("rope_type") or (rope_scaling or {}).get("type") or "default"
    if kind in ("default", "dynamic"):  # dynamic NTK only changes frequencies beyond max_position_embeddings
        return inv
    factor = float(rope_scaling["factor"])  # type: ignore[index]
    if kind == "linear":
        return inv / factor
    if kind == "llama3":
        low = float(rope_scaling.get("low_freq_factor", 1.0))  # type: ignore[union-attr]
        high = float(rope_scaling.get("high_freq_factor", 4.0))  # type: ignore[union-attr]
        old_len = float(rope_scaling.get("original_max_position_embeddings", 8192))  # type: ignore[union-attr]
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > old_len / low, inv / factor, inv)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= old_len / high) & (wavelen <= old_len / low)
        return np.where(medium, smoothed, scaled).astype(np.float32)
    raise PackError(f"config.json: rope_scaling type {kind!r} is not supported by the CPU runtime")


def cos_sin(inv_freq: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin tables of shape (len(positions), head_dim) in HF's rotate-half layout."""
    angles = positions.astype(np.float32)[:, None] * inv_freq[None, :]
    emb = np.concatenate([angles, angles], axis=-1)
    return np.cos(emb).astype(np.float32), np.sin(emb).astype(np.float32)
