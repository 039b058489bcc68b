"""The decoder forward pass in numpy float32, tensor-parallel for real: every rank computes with its own shards
(parallel.py) and the ranks meet only where MindIE's ranks communicate, the all-reduce (sum) after the
row-parallel o_proj and down_proj and after a vocab-parallel embedding lookup, and the all-gather of
vocab-parallel logits. The ranks run one after the other in this process.

Covers Llama (RoPE incl. llama3 scaling), Qwen2 (q/k/v bias), Qwen3 (per-head q/k RMS norms, explicit head_dim)
and Baichuan2-7B (NormHead: lm_head rows normalised). Tied embeddings use the embedding shard as lm_head.

Why numpy and not MindSpore ops: a decode step is ~30 small ops per layer; numpy's float32 BLAS with weights
stored (in, out)-contiguous and a preallocated KV cache decodes faster than transformers on 2 cores, where
MindSpore's per-op dispatch cost dominated (benchmarks/runtime.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from mindie_pack.errors import PackError
from mindie_pack.models import ModelDims
from mindie_pack.runtime.parallel import EMBEDDING, FINAL_NORM, LM_HEAD
from mindie_pack.runtime.rope import cos_sin, inverse_frequencies
from mindie_pack.runtime.weights import RankWeights


@dataclass
class RankLayer:
    attention_norm: np.ndarray  # (hidden,)
    ffn_norm: np.ndarray
    wqkv: np.ndarray  # (hidden, (q_heads + 2 kv_heads) * head_dim): this rank's q, k, v blocks, (in, out) layout
    wo: np.ndarray  # (q_heads * head_dim, hidden): this rank's input block of o_proj
    w13: np.ndarray  # (hidden, 2 * ffn): this rank's gate and up blocks
    w2: np.ndarray  # (ffn, hidden): this rank's input block of down_proj
    bqkv: np.ndarray | None = None
    q_norm: np.ndarray | None = None  # (head_dim,) Qwen3
    k_norm: np.ndarray | None = None


@dataclass
class Rank:
    index: int
    q_heads: int
    kv_heads: int
    ffn: int
    layers: list[RankLayer]
    embedding: np.ndarray  # (vocab rows of this rank, hidden)
    vocab_start: int  # first vocabulary id of `embedding` (0 when replicated)
    final_norm: np.ndarray
    head: np.ndarray | None  # (hidden, vocab rows of this rank); None: replicated, rank 0 computes the logits


@dataclass
class KVCache:
    """keys/values[layer][rank]: (kv_heads of the rank, capacity, head_dim); positions [0, length) are valid."""

    keys: list[list[np.ndarray]]
    values: list[list[np.ndarray]]
    length: int = 0

    def append(self, layer: int, rank: int, k: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        keys, values = self.keys[layer][rank], self.values[layer][rank]
        start, new = self.length, k.shape[1]
        if start + new > keys.shape[1]:
            capacity = max(64, 1 << (start + new - 1).bit_length())
            grown_k = np.empty((keys.shape[0], capacity, keys.shape[2]), dtype=np.float32)
            grown_v = np.empty_like(grown_k)
            grown_k[:, :start], grown_v[:, :start] = keys[:, :start], values[:, :start]
            self.keys[layer][rank], self.values[layer][rank] = keys, values = grown_k, grown_v
        keys[:, start:start + new] = k
        values[:, start:start + new] = v
        return keys[:, :start + new], values[:, :start + new]


def _rms_norm(x: np.ndarray, weight: np.ndarray, eps: float) -> np.ndarray:
    variance = np.mean(x * x, axis=-1, keepdims=True)
    return x * (1.0 / np.sqrt(variance + eps)) * weight


def _rotate(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """HF's rotate-half RoPE; x: (n, heads, head_dim), cos/sin: (n, 1, head_dim)."""
    half = x.shape[-1] // 2
    rotated = np.concatenate([-x[..., half:], x[..., :half]], axis=-1)
    return x * cos + rotated * sin


@dataclass
class DecoderModel:
    dims: ModelDims
    ranks: list[Rank]
    inv_freq: np.ndarray
    vocab_split: bool  # embedding vocab-parallel (else replicated)
    _scale: float = field(init=False)

    def __post_init__(self) -> None:
        self._scale = 1.0 / float(np.sqrt(self.dims.head_dim))

    @property
    def tp(self) -> int:
        return len(self.ranks)

    @property
    def layers(self) -> list[RankLayer]:
        """Rank 0's layers (their count is the model's depth)."""
        return self.ranks[0].layers

    @classmethod
    def from_rank_weights(cls, dims: ModelDims, rank_weights: list[RankWeights], *, norm_head: bool,
                          vocab_split: bool, head_split: bool) -> DecoderModel:
        ranks = [_build_rank(dims, index, weights, norm_head=norm_head, vocab_split=vocab_split,
                             head_split=head_split)
                 for index, weights in enumerate(rank_weights)]
        heads = sum(r.q_heads for r in ranks)
        kv = sum(r.kv_heads for r in ranks)
        if heads != dims.num_heads or kv != dims.num_kv_heads:
            raise PackError(f"the ranks hold {heads} query / {kv} key-value heads, config.json says "
                            f"{dims.num_heads} / {dims.num_kv_heads}")
        return cls(dims, ranks, inverse_frequencies(dims.head_dim, dims.rope_theta, dims.rope_scaling), vocab_split)

    def new_cache(self) -> KVCache:
        hd = self.dims.head_dim
        empty = [[np.empty((r.kv_heads, 0, hd), dtype=np.float32) for r in self.ranks] for _ in self.layers]
        return KVCache(empty, [[a.copy() for a in row] for row in empty])

    # -- the forward pass ------------------------------------------------------------------------
    def forward(self, token_ids: list[int], cache: KVCache, *, last_only: bool = False) -> np.ndarray:
        """Logits (len(token_ids), vocab) for new tokens appended after what the cache holds; with `last_only`
        only the last position's (1, vocab)."""
        n, start = len(token_ids), cache.length
        cos, sin = cos_sin(self.inv_freq, np.arange(start, start + n))
        cos, sin = cos[:, None, :], sin[:, None, :]
        mask = None
        if n > 1:
            rows = np.arange(n)[:, None] + start
            mask = np.where(np.arange(start + n)[None, :] > rows, -np.inf, 0.0).astype(np.float32)
        x = self._embed(np.asarray(token_ids, dtype=np.int64))
        for li in range(len(self.layers)):
            x = x + self._all_reduce(self._attention(rank, li, x, cos, sin, mask, cache) for rank in self.ranks)
            x = x + self._all_reduce(self._mlp(rank.layers[li], x) for rank in self.ranks)
        cache.length = start + n
        return self._logits(x[-1:] if last_only else x)

    @staticmethod
    def _all_reduce(partials: Iterable[np.ndarray]) -> np.ndarray:
        total: np.ndarray | None = None
        for part in partials:
            total = part if total is None else total + part
        assert total is not None
        return total

    def _embed(self, ids: np.ndarray) -> np.ndarray:
        if not self.vocab_split:  # replicated: rank 0's copy (the ranks' copies were checked identical)
            return self.ranks[0].embedding[ids]
        parts = []
        for rank in self.ranks:  # vocab-parallel: each rank looks up the ids it owns, zeros elsewhere
            local = ids - rank.vocab_start
            owned = (local >= 0) & (local < rank.embedding.shape[0])
            rows = rank.embedding[np.where(owned, local, 0)]
            parts.append(np.where(owned[:, None], rows, np.float32(0.0)))
        return self._all_reduce(parts)

    def _attention(self, rank: Rank, li: int, x: np.ndarray, cos: np.ndarray, sin: np.ndarray,
                   mask: np.ndarray | None, cache: KVCache) -> np.ndarray:
        layer, d = rank.layers[li], self.dims
        n, hd, hq, hk = x.shape[0], d.head_dim, rank.q_heads, rank.kv_heads
        h = _rms_norm(x, layer.attention_norm, d.rms_norm_eps)
        qkv = h @ layer.wqkv
        if layer.bqkv is not None:
            qkv += layer.bqkv
        q = qkv[:, :hq * hd].reshape(n, hq, hd)
        k = qkv[:, hq * hd:(hq + hk) * hd].reshape(n, hk, hd)
        v = qkv[:, (hq + hk) * hd:].reshape(n, hk, hd)
        if layer.q_norm is not None and layer.k_norm is not None:
            q = _rms_norm(q, layer.q_norm, d.rms_norm_eps)
            k = _rms_norm(k, layer.k_norm, d.rms_norm_eps)
        q, k = _rotate(q, cos, sin), _rotate(k, cos, sin)
        keys, values = cache.append(li, rank.index, k.transpose(1, 0, 2), v.transpose(1, 0, 2))
        # Grouped-query attention without copying K/V: (kv, groups, n, hd) against (kv, 1, total, hd).
        groups = hq // hk
        qg = q.transpose(1, 0, 2).reshape(hk, groups, n, hd)
        scores = (qg @ keys[:, None].transpose(0, 1, 3, 2)) * np.float32(self._scale)
        if mask is not None:
            scores += mask
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        attn = (scores @ values[:, None]).reshape(hq, n, hd).transpose(1, 0, 2).reshape(n, hq * hd)
        return attn @ layer.wo

    def _mlp(self, layer: RankLayer, x: np.ndarray) -> np.ndarray:
        h = _rms_norm(x, layer.ffn_norm, self.dims.rms_norm_eps)
        gate_up = h @ layer.w13
        ffn = gate_up.shape[1] // 2
        gate = gate_up[:, :ffn]
        with np.errstate(over="ignore"):  # exp(-gate) overflows to inf for very negative gates: silu -> -0
            act = gate / (np.float32(1.0) + np.exp(-gate)) * gate_up[:, ffn:]
        return act @ layer.w2

    def _logits(self, x: np.ndarray) -> np.ndarray:
        parts = []
        for rank in self.ranks:  # vocab-parallel: each rank's block of logits, gathered in rank order
            if rank.head is not None:
                parts.append(_rms_norm(x, rank.final_norm, self.dims.rms_norm_eps) @ rank.head)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=-1)


def _build_rank(dims: ModelDims, index: int, w: RankWeights, *, norm_head: bool, vocab_split: bool,
                head_split: bool) -> Rank:
    hd = dims.head_dim
    layers = []
    q_heads = kv_heads = ffn = 0
    for i in range(dims.num_layers):
        p = f"model.layers.{i}."

        def get(name: str, p: str = p) -> np.ndarray:
            return w[p + name]

        wq, wk, wv = get("attention.wq.weight"), get("attention.wk.weight"), get("attention.wv.weight")
        q_heads, kv_heads = wq.shape[0] // hd, wk.shape[0] // hd
        if q_heads == 0 or kv_heads == 0 or q_heads % kv_heads or wv.shape != wk.shape:
            raise PackError(f"rank {index}: layer {i} holds {wq.shape[0]} q / {wk.shape[0]} k / {wv.shape[0]} v "
                            f"rows, not whole heads of {hd} sharing key-value heads evenly")
        if q_heads // kv_heads != dims.num_heads // dims.num_kv_heads:
            raise PackError(f"rank {index}: {q_heads} query heads over {kv_heads} key-value heads break the "
                            f"model's grouping ({dims.num_heads} over {dims.num_kv_heads})")
        w1, w3 = get("feed_forward.w1.weight"), get("feed_forward.w3.weight")
        ffn = w1.shape[0]
        bias = None
        if p + "attention.wq.bias" in w:
            bias = np.concatenate([get("attention.wq.bias"), get("attention.wk.bias"), get("attention.wv.bias")])
        layers.append(RankLayer(
            attention_norm=_f32(get("attention_norm.weight")), ffn_norm=_f32(get("ffn_norm.weight")),
            wqkv=_in_out(np.concatenate([wq, wk, wv], axis=0)),
            wo=_in_out(get("attention.wo.weight")),
            w13=_in_out(np.concatenate([w1, w3], axis=0)),
            w2=_in_out(get("feed_forward.w2.weight")),
            bqkv=None if bias is None else _f32(bias),
            q_norm=_f32(w[p + "attention.q_norm.weight"]) if p + "attention.q_norm.weight" in w else None,
            k_norm=_f32(w[p + "attention.k_norm.weight"]) if p + "attention.k_norm.weight" in w else None,
        ))
    embedding = _f32(w[EMBEDDING])
    vocab_start = index * embedding.shape[0] if vocab_split else 0
    head: np.ndarray | None = None
    if LM_HEAD in w:
        if head_split or index == 0:
            rows = w[LM_HEAD]
            if norm_head:  # Baichuan2's NormHead: F.normalize(weight) over each vocabulary row
                rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
            head = _in_out(rows)
    elif vocab_split or index == 0:  # tied: the embedding (shard) is the lm_head (shard)
        head = _in_out(embedding)
    return Rank(index, q_heads, kv_heads, ffn, layers, embedding, vocab_start, _f32(w[FINAL_NORM]), head)


def _f32(array: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(array, dtype=np.float32)


def _in_out(weight: np.ndarray) -> np.ndarray:
    """(out, in) -> (in, out) contiguous: `x @ w` then reads memory in order (2-3x faster per decode step)."""
    return np.ascontiguousarray(weight.T, dtype=np.float32)
