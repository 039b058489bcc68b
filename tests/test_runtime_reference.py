"""The CPU runtime on built directories (each of the tp ranks computing with its own rank file) against Hugging
Face transformers on the source model, at tp 1, 2 and 4."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.options import BuildOptions
from mindie_pack.runtime import GenerationParams, load_runtime
from mindie_pack.runtime.reference import NumpyReference, TransformersReference

from build_helpers import write_mindformers_checkout

PROMPT = "Tensor parallelism splits each weight across several cards."
LLAMA3_ROPE = {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
               "original_max_position_embeddings": 256}
FAMILY_FIELDS: dict[str, dict[str, object]] = {
    "llama": {"num_kv_heads": 4},
    "llama3": {"num_kv_heads": 4, "rope_scaling": LLAMA3_ROPE, "family": "llama"},
    "qwen2": {"num_kv_heads": 4, "tie_word_embeddings": True},
    "qwen2-untied": {"num_kv_heads": 2, "family": "qwen2"},
    "baichuan2": {"num_kv_heads": 4},
}
CASES = [(name, tp, dtype) for name in ("llama", "qwen2", "baichuan2") for tp in (1, 2, 4)
         for dtype in ("float32", "bfloat16")]
CASES += [("llama3", 2, "float32"), ("qwen2-untied", 2, "bfloat16")]


@pytest.fixture(scope="module")
def mindformers_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mindformers_checkout(tmp_path_factory.mktemp("mf"))


@pytest.fixture(scope="module")
def references() -> dict[Path, TransformersReference]:
    return {}


def _hf(tiny_models: Callable[..., Path], name: str, dtype: str) -> Path:
    fields = dict(FAMILY_FIELDS[name])
    family = str(fields.pop("family", name))
    return tiny_models(family=family, dtype=dtype, **fields)


@pytest.mark.slow
@pytest.mark.parametrize(("name", "tp", "dtype"), CASES)
def test_greedy_continuation_equals_transformers(name: str, tp: int, dtype: str, tiny_models: Callable[..., Path],
                                                 mindformers_src: Path, references: dict[Path, TransformersReference],
                                                 tmp_path: Path) -> None:
    hf_dir = _hf(tiny_models, name, dtype)
    out = tmp_path / "model"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=tp,
                                 mindformers_src=mindformers_src if name == "baichuan2" else None))
    runtime = load_runtime(out)
    reference = references.setdefault(hf_dir, TransformersReference(hf_dir))
    ids = runtime.encode(PROMPT)
    diff = float(np.max(np.abs(runtime.prompt_logits(ids) - reference.logits(ids))))
    assert diff <= 1e-4, diff  # weights are float32 in both after the upcast of bf16 storage
    ours = runtime.generate([ids], GenerationParams(max_new_tokens=16, ignore_eos=True))[0]
    assert len(ours.token_ids) == 16
    assert ours.token_ids == reference.greedy(ids, 16)


def test_mf_safetensors_directory_runs_like_the_source(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_models(family="qwen2", dtype="float32", shards=2)
    out = tmp_path / "mcore"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=2, profile="mf-safetensors"))
    runtime = load_runtime(out)
    ids = runtime.encode(PROMPT)
    reference = NumpyReference.load(hf_dir)
    assert float(np.max(np.abs(runtime.prompt_logits(ids) - reference.logits(ids)))) <= 1e-4
    greedy = runtime.generate([ids], GenerationParams(max_new_tokens=6, ignore_eos=True))[0].token_ids
    assert greedy == reference.greedy(ids, 6)


@pytest.mark.parametrize("family", ["llama", "qwen2", "baichuan2"])
def test_numpy_reference_agrees_with_transformers(family: str, tiny_models: Callable[..., Path]) -> None:
    hf_dir = tiny_models(family=family, dtype="float32", num_kv_heads=4 if family == "baichuan2" else 2)
    ids = [5, 17, 42, 99, 3, 250, 7]
    ours = NumpyReference.load(hf_dir).logits(ids)
    theirs = TransformersReference(hf_dir).logits(ids)
    assert float(np.max(np.abs(ours - theirs))) <= 1e-4
