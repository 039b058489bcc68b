"""The decoder forward pass in MindSpore ops on CPU (float32), with a KV cache for incremental decoding.

Covers the families `build` writes: Llama (RoPE incl. llama3 scaling), Qwen2 (q/k/v bias, tied embeddings)
and Baichuan2-7B (NormHead: lm_head rows normalised). Parameter names are MindFormers' (models/).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mindspore as ms
import numpy as np
from mindspore import ops

from mindie_pack.models import ModelDims
from mindie_pack.runtime.rope import cos_sin, inverse_frequencies


@dataclass
class KVCache:
    keys: list[ms.Tensor | None]
    values: list[ms.Tensor | None]
    length: int = 0

    @classmethod
    def empty(cls, layers: int) -> KVCache:
        return cls([None] * layers, [None] * layers)


@dataclass
class _Layer:
    wq: ms.Tensor
    wk: ms.Tensor
    wv: ms.Tensor
    wo: ms.Tensor
    w1: ms.Tensor
    w2: ms.Tensor
    w3: ms.Tensor
    attention_norm: ms.Tensor
    ffn_norm: ms.Tensor
    bq: ms.Tensor | None = None
    bk: ms.Tensor | None = None
    bv: ms.Tensor | None = None


@dataclass
class DecoderModel:
    dims: ModelDims
    embedding: np.ndarray
    layers: list[_Layer]
    norm_out: ms.Tensor
    lm_head: ms.Tensor
    inv_freq: np.ndarray
    _mask_cache: dict[int, ms.Tensor] = field(default_factory=dict)

    @classmethod
    def from_weights(cls, dims: ModelDims, weights: dict[str, np.ndarray], *, norm_head: bool) -> DecoderModel:
        def t(name: str) -> ms.Tensor:
            return ms.Tensor(np.ascontiguousarray(weights[name], dtype=np.float32))

        def linear(name: str) -> ms.Tensor:
            # Stored transposed once: `weight.T` inside matmul would copy every weight at every step.
            return ms.Tensor(np.ascontiguousarray(weights[name].T, dtype=np.float32))

        def opt(name: str) -> ms.Tensor | None:
            return t(name) if name in weights else None

        layers = []
        for i in range(dims.num_layers):
            p = f"model.layers.{i}."
            layers.append(_Layer(
                wq=linear(p + "attention.wq.weight"), wk=linear(p + "attention.wk.weight"),
                wv=linear(p + "attention.wv.weight"), wo=linear(p + "attention.wo.weight"),
                w1=linear(p + "feed_forward.w1.weight"), w2=linear(p + "feed_forward.w2.weight"),
                w3=linear(p + "feed_forward.w3.weight"),
                attention_norm=t(p + "attention_norm.weight"), ffn_norm=t(p + "ffn_norm.weight"),
                bq=opt(p + "attention.wq.bias"), bk=opt(p + "attention.wk.bias"), bv=opt(p + "attention.wv.bias"),
            ))
        embedding = weights["model.tok_embeddings.embedding_weight"].astype(np.float32)
        head = weights.get("lm_head.weight", embedding).astype(np.float32)
        if norm_head:  # Baichuan2's NormHead: F.normalize(weight) over each vocabulary row
            head = head / np.maximum(np.linalg.norm(head, axis=1, keepdims=True), 1e-12)
        inv_freq = inverse_frequencies(dims.head_dim, dims.rope_theta, dims.rope_scaling)
        return cls(dims, embedding, layers, t("model.norm_out.weight"), ms.Tensor(np.ascontiguousarray(head.T)),
                   inv_freq)

    def _rms_norm(self, x: ms.Tensor, weight: ms.Tensor) -> ms.Tensor:
        variance = ops.mean(x * x, axis=-1, keep_dims=True)
        return x * ops.rsqrt(variance + self.dims.rms_norm_eps) * weight

    @staticmethod
    def _linear(x: ms.Tensor, weight_t: ms.Tensor, bias: ms.Tensor | None = None) -> ms.Tensor:
        y = ops.matmul(x, weight_t)
        return y + bias if bias is not None else y

    @staticmethod
    def _rotate(x: ms.Tensor, cos: ms.Tensor, sin: ms.Tensor) -> ms.Tensor:
        half = x.shape[-1] // 2
        rotated = ops.cat([-x[..., half:], x[..., :half]], axis=-1)
        return x * cos + rotated * sin

    def _causal_mask(self, new: int, total: int) -> ms.Tensor:
        past = total - new
        rows = np.arange(new)[:, None] + past
        cols = np.arange(total)[None, :]
        return ms.Tensor(np.where(cols > rows, -np.inf, 0.0).astype(np.float32))

    def forward(self, token_ids: list[int], cache: KVCache) -> np.ndarray:
        """Logits (len(token_ids), vocab) for new tokens appended after what the cache holds."""
        d = self.dims
        new = len(token_ids)
        start = cache.length
        total = start + new
        heads, kv_heads, head_dim = d.num_heads, d.num_kv_heads, d.head_dim
        groups = heads // kv_heads
        cos_np, sin_np = cos_sin(self.inv_freq, np.arange(start, total))
        cos, sin = ms.Tensor(cos_np[None]), ms.Tensor(sin_np[None])  # (1, new, head_dim)
        mask = self._causal_mask(new, total) if new > 1 else None
        scale = 1.0 / float(np.sqrt(head_dim))
        x = ms.Tensor(self.embedding[np.asarray(token_ids, dtype=np.int64)])
        for index, layer in enumerate(self.layers):
            h = self._rms_norm(x, layer.attention_norm)
            q = self._linear(h, layer.wq, layer.bq).reshape(new, heads, head_dim).transpose(1, 0, 2)
            k = self._linear(h, layer.wk, layer.bk).reshape(new, kv_heads, head_dim).transpose(1, 0, 2)
            v = self._linear(h, layer.wv, layer.bv).reshape(new, kv_heads, head_dim).transpose(1, 0, 2)
            q, k = self._rotate(q, cos, sin), self._rotate(k, cos, sin)
            if cache.keys[index] is not None:
                k = ops.cat([cache.keys[index], k], axis=1)
                v = ops.cat([cache.values[index], v], axis=1)
            cache.keys[index], cache.values[index] = k, v
            # Grouped-query attention without copying K/V: (kv, groups, new, d) against (kv, 1, total, d).
            qg = q.reshape(kv_heads, groups, new, head_dim)
            scores = ops.matmul(qg, k.reshape(kv_heads, 1, total, head_dim).transpose(0, 1, 3, 2)) * scale
            if mask is not None:
                scores = scores + mask
            probs = ops.softmax(scores, axis=-1)
            attn = ops.matmul(probs, v.reshape(kv_heads, 1, total, head_dim))  # (kv, groups, new, d)
            attn = attn.reshape(heads, new, head_dim).transpose(1, 0, 2).reshape(new, heads * head_dim)
            x = x + self._linear(attn, layer.wo)
            h = self._rms_norm(x, layer.ffn_norm)
            x = x + self._linear(ops.silu(self._linear(h, layer.w1)) * self._linear(h, layer.w3), layer.w2)
        cache.length = total
        return self._linear(self._rms_norm(x, self.norm_out), self.lm_head).asnumpy()
