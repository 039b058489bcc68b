"""Independent references on the Hugging Face weights: transformers on CPU when installed, else plain numpy.

Both read the HF folder directly (never the built directory) so that they check the build, not repeat it.
Baichuan2 has no class in transformers (its modeling code ships with the checkpoint), so it is run as the
Llama network it is, with W_pack split into q/k/v and NormHead's rows normalised. Baichuan2-13B (ALiBi) is not
supported by the CPU runtime.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from mindie_pack.builder.hf_model import load_hf_model
from mindie_pack.models import ModelDims
from mindie_pack.runtime.rope import cos_sin, inverse_frequencies
from mindie_pack.weights.dtypes import to_float32
from mindie_pack.weights.hf_source import HFWeights


class Reference(Protocol):
    kind: str

    def logits(self, token_ids: list[int]) -> np.ndarray: ...

    def greedy(self, token_ids: list[int], new_tokens: int) -> list[int]: ...


def hf_state_dict(hf_dir: Path) -> dict[str, np.ndarray]:
    """HF tensors as float32, with Baichuan2's W_pack split and NormHead applied (Llama names)."""
    model = load_hf_model(hf_dir)
    weights = HFWeights(hf_dir)
    state: dict[str, np.ndarray] = {}
    for entry in weights.iter_entries():
        array = to_float32(weights.read(entry.name))
        if entry.name.endswith("self_attn.W_pack.weight"):
            prefix = entry.name.removesuffix("W_pack.weight")
            for part, chunk in zip(("q_proj", "k_proj", "v_proj"), np.split(array, 3, axis=0), strict=True):
                state[f"{prefix}{part}.weight"] = chunk
        else:
            state[entry.name] = array
    if model.family.name == "baichuan2":
        # MindFormers declares NormHead's weight float16 whatever the model dtype, so the deployed model sees
        # fp16-rounded rows; round them here too so that the comparison measures the conversion, not that choice.
        head = state["lm_head.weight"].astype(np.float16).astype(np.float32)
        state["lm_head.weight"] = head / np.maximum(np.linalg.norm(head, axis=1, keepdims=True), 1e-12)
    return state


@dataclass
class NumpyReference:
    """Full recompute per step, float64 accumulation-free plain numpy: slow, obvious, independent."""

    dims: ModelDims
    state: dict[str, np.ndarray]
    kind: str = "numpy"

    @classmethod
    def load(cls, hf_dir: Path) -> NumpyReference:
        return cls(load_hf_model(hf_dir).dims, hf_state_dict(hf_dir))

    def _norm(self, x: np.ndarray, w: np.ndarray) -> np.ndarray:
        return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + self.dims.rms_norm_eps) * w

    def logits(self, token_ids: list[int]) -> np.ndarray:
        d, s = self.dims, self.state
        n, hd = len(token_ids), d.head_dim
        cos, sin = cos_sin(inverse_frequencies(hd, d.rope_theta, d.rope_scaling), np.arange(n))

        def rope(x: np.ndarray) -> np.ndarray:  # x: (heads, n, hd)
            half = hd // 2
            return x * cos + np.concatenate([-x[..., half:], x[..., :half]], axis=-1) * sin

        def proj(x: np.ndarray, name: str) -> np.ndarray:
            y = x @ s[name + ".weight"].T
            return y + s[name + ".bias"] if name + ".bias" in s else y

        x = s["model.embed_tokens.weight"][np.asarray(token_ids)]
        mask = np.triu(np.full((n, n), -np.inf, dtype=np.float32), k=1)
        for i in range(d.num_layers):
            p = f"model.layers.{i}."
            h = self._norm(x, s[p + "input_layernorm.weight"])
            q = proj(h, p + "self_attn.q_proj").reshape(n, d.num_heads, hd)
            k = proj(h, p + "self_attn.k_proj").reshape(n, d.num_kv_heads, hd)
            if p + "self_attn.q_norm.weight" in s:  # Qwen3: RMS norm of each head before RoPE
                q = self._norm(q, s[p + "self_attn.q_norm.weight"])
                k = self._norm(k, s[p + "self_attn.k_norm.weight"])
            q, k = rope(q.transpose(1, 0, 2)), rope(k.transpose(1, 0, 2))
            v = proj(h, p + "self_attn.v_proj").reshape(n, d.num_kv_heads, hd).transpose(1, 0, 2)
            groups = d.num_heads // d.num_kv_heads
            k, v = np.repeat(k, groups, axis=0), np.repeat(v, groups, axis=0)
            scores = q @ k.transpose(0, 2, 1) / np.sqrt(hd) + mask
            scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
            attn = (scores / scores.sum(axis=-1, keepdims=True)) @ v
            x = x + proj(attn.transpose(1, 0, 2).reshape(n, -1), p + "self_attn.o_proj")
            h = self._norm(x, s[p + "post_attention_layernorm.weight"])
            gate = proj(h, p + "mlp.gate_proj")
            x = x + proj(gate / (1 + np.exp(-gate)) * proj(h, p + "mlp.up_proj"), p + "mlp.down_proj")
        head = s.get("lm_head.weight", s["model.embed_tokens.weight"])
        return self._norm(x, s["model.norm.weight"]) @ head.T

    def greedy(self, token_ids: list[int], new_tokens: int) -> list[int]:
        ids = list(token_ids)
        for _ in range(new_tokens):
            ids.append(int(np.argmax(self.logits(ids)[-1])))
        return ids[len(token_ids):]


class TransformersReference:
    kind = "transformers"

    def __init__(self, hf_dir: Path) -> None:
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM, LlamaConfig, LlamaForCausalLM

        self._torch = torch
        model = load_hf_model(hf_dir)
        if model.family.name == "baichuan2":
            d = model.dims
            config = LlamaConfig(
                vocab_size=d.vocab_size, hidden_size=d.hidden_size, intermediate_size=d.intermediate_size,
                num_hidden_layers=d.num_layers, num_attention_heads=d.num_heads, num_key_value_heads=d.num_kv_heads,
                max_position_embeddings=d.max_position_embeddings, rms_norm_eps=d.rms_norm_eps,
                rope_theta=d.rope_theta, tie_word_embeddings=False, attention_bias=False,
            )
            self.model = LlamaForCausalLM(config).eval()
            state = {k: torch.from_numpy(v) for k, v in hf_state_dict(hf_dir).items()}
            self.model.load_state_dict(state, strict=True)
        else:
            AutoConfig.from_pretrained(hf_dir)  # fail early with transformers' own message on odd configs
            self.model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32).eval()

    def logits(self, token_ids: list[int]) -> np.ndarray:
        with self._torch.no_grad():
            return self.model(self._torch.tensor([token_ids])).logits[0].float().numpy()

    def greedy(self, token_ids: list[int], new_tokens: int, repetition_penalty: float = 1.0) -> list[int]:
        from transformers import GenerationConfig

        config = GenerationConfig(max_new_tokens=new_tokens, do_sample=False, eos_token_id=None, pad_token_id=0,
                                  repetition_penalty=repetition_penalty)
        # generate() merges in the model's own generation_config, whose eos would end the continuation early.
        self.model.generation_config.eos_token_id = None
        with self._torch.no_grad():
            out = self.model.generate(self._torch.tensor([token_ids]), generation_config=config)
        return out[0, len(token_ids):].tolist()


def load_reference(hf_dir: Path, prefer: str = "auto") -> Reference:
    """transformers when importable (or asked for), else numpy."""
    if prefer in ("auto", "transformers"):
        try:
            import torch  # noqa: F401
            import transformers  # noqa: F401
        except ImportError:
            if prefer == "transformers":
                raise
        else:
            return TransformersReference(hf_dir)
    return NumpyReference.load(hf_dir)
