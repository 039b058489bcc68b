"""Families served from the Hugging Face folder (atb/torch) on the CPU runtime: Qwen3 dense, the DeepSeek-R1
distills (Qwen2 and Llama architectures), each against transformers on the same folder; the distills also
through an ms build."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from safetensors import safe_open

from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.options import BuildOptions
from mindie_pack.errors import PackError
from mindie_pack.runtime import GenerationParams, load_runtime, open_model
from mindie_pack.runtime.reference import NumpyReference, TransformersReference

PROMPT = "MindIE serves large language models on Ascend NPUs."

# Tiny versions of the DeepSeek-R1 distills' config.json (huggingface.co/deepseek-ai/DeepSeek-R1-Distill-*):
# the fields that make them differ from our plain tiny models, at tiny sizes.
DISTILL_QWEN = {  # DeepSeek-R1-Distill-Qwen-1.5B/7B/14B/32B: Qwen2ForCausalLM
    "family": "qwen2", "num_kv_heads": 2, "tie_word_embeddings": False, "max_position_embeddings": 131072,
    "config_overrides": {"rope_theta": 10000, "sliding_window": 4096, "max_window_layers": 21,
                         "use_sliding_window": False, "use_mrope": False},
}
DISTILL_LLAMA = {  # DeepSeek-R1-Distill-Llama-8B/70B: LlamaForCausalLM with llama3 rope scaling
    "family": "llama", "num_kv_heads": 2, "max_position_embeddings": 131072,
    "rope_scaling": {"factor": 8.0, "high_freq_factor": 4.0, "low_freq_factor": 1.0,
                     "original_max_position_embeddings": 8192, "rope_type": "llama3"},
    "config_overrides": {"rms_norm_eps": 1e-05, "rope_theta": 500000.0, "pretraining_tp": 1},
}
QWEN3 = {"family": "qwen3", "head_dim": 32, "num_kv_heads": 2}  # head_dim 32 != hidden 64 / 4 heads


def _agrees(runtime_path: Path, hf_dir: Path, tp: int | None = None, tokens: int = 12) -> None:
    runtime = open_model(runtime_path, tp=tp)
    reference = TransformersReference(hf_dir)
    ids = runtime.encode(PROMPT)
    diff = float(np.max(np.abs(runtime.prompt_logits(ids) - reference.logits(ids))))
    assert diff <= 1e-4, diff
    ours = runtime.generate([ids], GenerationParams(max_new_tokens=tokens, ignore_eos=True))[0].token_ids
    assert ours == reference.greedy(ids, tokens)


@pytest.mark.parametrize(("dtype", "tied", "tp"), [("bfloat16", True, 1), ("bfloat16", False, 2),
                                                   ("float32", True, 2), ("float32", False, 1)])
def test_qwen3_hf_folder_equals_transformers(dtype: str, tied: bool, tp: int,
                                             tiny_models: Callable[..., Path]) -> None:
    hf_dir = tiny_models(**QWEN3, dtype=dtype, tie_word_embeddings=tied)
    config = json.loads((hf_dir / "config.json").read_text())
    assert config["model_type"] == "qwen3" and config["head_dim"] == 32  # written by transformers' Qwen3Config
    with safe_open(hf_dir / "model.safetensors", "np") as weights:
        assert ("lm_head.weight" in weights.keys()) is not tied  # save_pretrained drops a tied lm_head
    _agrees(hf_dir, hf_dir, tp=tp)


def test_qwen3_with_qk_norms_across_four_ranks(tiny_models: Callable[..., Path]) -> None:
    hf_dir = tiny_models(family="qwen3", head_dim=24, num_heads=8, num_kv_heads=4, dtype="float32")
    runtime = open_model(hf_dir, tp=4)
    assert all(layer.q_norm is not None and layer.q_norm.shape == (24,) for r in runtime.model.ranks
               for layer in r.layers)
    _agrees(hf_dir, hf_dir, tp=4)


def test_qwen3_qk_norms_matter(tiny_model_copy: Callable[..., Path]) -> None:
    """The q/k norms are really applied: dropping them from the runtime's weights changes the logits."""
    hf_dir = tiny_model_copy(**QWEN3, dtype="float32")
    runtime = open_model(hf_dir)
    ids = runtime.encode(PROMPT)
    with_norms = runtime.prompt_logits(ids)
    for rank in runtime.model.ranks:
        for layer in rank.layers:
            layer.q_norm = layer.k_norm = None
    assert float(np.max(np.abs(runtime.prompt_logits(ids) - with_norms))) > 1e-2


def test_qwen3_numpy_reference_agrees_with_transformers(tiny_models: Callable[..., Path]) -> None:
    hf_dir = tiny_models(**QWEN3, dtype="float32")
    ids = [5, 17, 42, 99, 3, 250, 7]
    diff = NumpyReference.load(hf_dir).logits(ids) - TransformersReference(hf_dir).logits(ids)
    assert float(np.max(np.abs(diff))) <= 1e-4


def test_qwen3_has_no_ms_build(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    with pytest.raises(PackError, match=r"Qwen3 has no MindFormers legacy network .* --profile atb"):
        build_model_dir(BuildOptions(model_dir=tiny_models(**QWEN3, dtype="bfloat16"), output_dir=tmp_path / "out"))
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("distill", ["qwen", "llama"])
def test_deepseek_r1_distills_run_from_the_hf_folder_and_an_ms_build(distill: str, tiny_models: Callable[..., Path],
                                                                    tmp_path: Path) -> None:
    fields = DISTILL_QWEN if distill == "qwen" else DISTILL_LLAMA
    hf_dir = tiny_models(**fields, dtype="bfloat16")
    config = json.loads((hf_dir / "config.json").read_text())
    assert config["max_position_embeddings"] == 131072
    _agrees(hf_dir, hf_dir)  # atb/torch: the HF folder as is
    out = tmp_path / "ms"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=2))
    _agrees(out, hf_dir)  # ms: rank files, each rank computing with its own shards


def test_llama3_rope_scaling_matters_for_the_llama_distill(tiny_model_copy: Callable[..., Path]) -> None:
    """The distill's llama3 scaling changes the model (so the agreement above proves it is applied)."""
    hf_dir = tiny_model_copy(**DISTILL_LLAMA, dtype="float32")
    ids = open_model(hf_dir).encode(PROMPT)
    scaled = open_model(hf_dir).prompt_logits(ids)
    config = json.loads((hf_dir / "config.json").read_text())
    config["rope_scaling"] = None
    (hf_dir / "config.json").write_text(json.dumps(config))
    assert float(np.max(np.abs(open_model(hf_dir).prompt_logits(ids) - scaled))) > 1e-3


def test_hf_folder_entry_is_what_load_runtime_opens(tiny_models: Callable[..., Path]) -> None:
    hf_dir = tiny_models(**QWEN3, dtype="bfloat16")
    runtime = load_runtime(hf_dir)
    assert runtime.model.tp == 1
    assert runtime.eos_token_ids == tuple(json.loads((hf_dir / "generation_config.json").read_text())["eos_token_id"])
    assert runtime.decode(runtime.encode(PROMPT)) == PROMPT


def test_hf_folder_without_weights_is_named(tiny_model_copy: Callable[..., Path]) -> None:
    hf_dir = tiny_model_copy(**QWEN3, dtype="bfloat16")
    (hf_dir / "model.safetensors").unlink()
    with pytest.raises(PackError, match=r"no weights found \(expected model.safetensors"):
        open_model(hf_dir)


def test_hf_folder_missing_a_qk_norm_is_named(tiny_model_copy: Callable[..., Path]) -> None:
    from safetensors.numpy import load_file, save_file

    hf_dir = tiny_model_copy(**QWEN3, dtype="float32")
    tensors = load_file(hf_dir / "model.safetensors")
    del tensors["model.layers.1.self_attn.k_norm.weight"]
    save_file(tensors, hf_dir / "model.safetensors")
    with pytest.raises(PackError, match=r"tensor 'model.layers.1.self_attn.k_norm.weight' is missing"):
        open_model(hf_dir)


def test_built_directory_keeps_its_tp(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    out = tmp_path / "m"
    build_model_dir(BuildOptions(model_dir=tiny_models(family="llama", dtype="float32"), output_dir=out, tp=2))
    with pytest.raises(PackError, match=r"built for tp 2 \(parallel_config.model_parallel\), not 1"):
        open_model(out, tp=1)
    shutil.rmtree(out)


def test_a_model_too_large_for_memory_is_refused_before_loading(tiny_models: Callable[..., Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    import psutil

    class Memory:
        available = 1 << 20  # 1 MiB: less than the tiny model's float32 weights

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Memory())
    with pytest.raises(PackError, match=r"the CPU runtime needs about [0-9.]+ MiB for this model's float32 "
                                        r"weights, 1\.0 MiB is available"):
        open_model(tiny_models(**QWEN3, dtype="bfloat16"))
