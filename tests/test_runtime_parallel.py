"""Tensor parallelism on CPU for real: each rank computes with its own shards, so a build that splits a tensor on
the wrong axis, or puts a shard on the wrong rank, fails here (greedy tokens and logits are checked against
transformers in test_runtime_reference.py); the repetition penalty against transformers' own processor."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.options import BuildOptions
from mindie_pack.errors import PackError
from mindie_pack.models import ModelFamily, TensorSpec
from mindie_pack.runtime import GenerationParams, load_runtime
from mindie_pack.runtime.reference import TransformersReference
from mindie_pack.runtime.sampling import apply_repetition_penalty
from mindie_pack.weights.ckpt_format import CkptWriter, read_record, scan_records

PROMPT = "Tensor parallelism splits each weight across several cards."


def _build(hf_dir: Path, out: Path, tp: int) -> Path:
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=tp))
    return out


@pytest.mark.parametrize(("family", "tp", "vocab_split"), [("qwen2", 2, True), ("qwen2", 4, True),
                                                          ("llama", 2, False)])
def test_ranks_hold_only_their_shards(family: str, tp: int, vocab_split: bool, tiny_models: Callable[..., Path],
                                      tmp_path: Path) -> None:
    # Qwen2's predict yamls split the vocabulary (vocab_emb_dp false), Llama's replicate it (models/).
    runtime = load_runtime(_build(tiny_models(family=family, dtype="float32", num_kv_heads=4), tmp_path / "m", tp))
    model = runtime.model
    assert model.tp == tp and model.vocab_split is vocab_split
    d = model.dims
    for rank in model.ranks:
        assert (rank.q_heads, rank.kv_heads, rank.ffn) == (d.num_heads // tp, d.num_kv_heads // tp,
                                                           d.intermediate_size // tp)
        layer = rank.layers[0]
        assert layer.wqkv.shape == (d.hidden_size, (rank.q_heads + 2 * rank.kv_heads) * d.head_dim)
        assert layer.wo.shape == (rank.q_heads * d.head_dim, d.hidden_size)
        assert layer.w13.shape == (d.hidden_size, 2 * d.intermediate_size // tp)
        assert layer.w2.shape == (d.intermediate_size // tp, d.hidden_size)
        assert rank.embedding.shape[0] == (d.vocab_size // tp if vocab_split else d.vocab_size)
        assert rank.vocab_start == (rank.index * d.vocab_size // tp if vocab_split else 0)


def _wrong_axis(target_suffix: str) -> Callable[[ModelFamily, object, object, object], list[TensorSpec]]:
    original = ModelFamily.tensor_specs

    def specs(self: ModelFamily, dims: object, plan: object, dtype: object) -> list[TensorSpec]:
        out = []
        for spec in original(self, dims, plan, dtype):  # type: ignore[arg-type]
            if spec.target.endswith(target_suffix):
                spec = dataclasses.replace(spec, split_axis=1 - (spec.split_axis or 0))
            out.append(spec)
        return out

    return specs


@pytest.mark.parametrize(("suffix", "kind"), [
    ("attention.wq.weight", "column-parallel"),
    ("attention.wo.weight", "row-parallel"),  # square (64 x 64): merging the shards back would hide this
    ("feed_forward.w1.weight", "column-parallel"),
    ("feed_forward.w2.weight", "row-parallel"),
    ("model.tok_embeddings.embedding_weight", "vocab-parallel"),
    ("lm_head.weight", "vocab-parallel"),
])
def test_a_build_splitting_on_the_wrong_axis_is_caught(suffix: str, kind: str, tiny_models: Callable[..., Path],
                                                       tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A wrong rule in models/ (the one home of split rules): the build splits by it, and the runtime reads the same
    # rules. A runtime that merged the shards back by that rule would run the model correctly and hide the bug.
    monkeypatch.setattr(ModelFamily, "tensor_specs", _wrong_axis(suffix))
    out = _build(tiny_models(family="qwen2", dtype="float32", num_kv_heads=4), tmp_path / "m", 2)
    with pytest.raises(PackError, match=rf"rank_0/checkpoint_0\.ckpt: tensor '[a-z_.0-9]*{suffix}' has shape .*"
                                        rf"rank 0 of 2 computes it {kind}"):
        load_runtime(out)


def test_a_shard_on_the_wrong_rank_changes_the_output(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_models(family="qwen2", dtype="float32", num_kv_heads=4)
    out = _build(hf_dir, tmp_path / "m", 2)
    reference = TransformersReference(hf_dir)
    runtime = load_runtime(out)
    ids = runtime.encode(PROMPT)
    assert float(np.max(np.abs(runtime.prompt_logits(ids) - reference.logits(ids)))) <= 1e-4
    # Swap rank 0's and rank 1's k_proj block of layer 0: shapes stay valid, each rank now pairs its query heads
    # with the other rank's key heads. A runtime that merged shards by the build's own rule would not notice.
    name = "model.layers.0.attention.wk.weight"
    paths = [out / f"weights/rank_{r}/checkpoint_{r}.ckpt" for r in (0, 1)]
    tensors = [{rec.name: read_record(p, rec) for rec in scan_records(p)} for p in paths]
    tensors[0][name], tensors[1][name] = tensors[1][name], tensors[0][name]
    for path, content in zip(paths, tensors, strict=True):
        with CkptWriter(path) as writer:
            for key, tensor in content.items():
                writer.write(key, tensor)
    swapped = load_runtime(out)
    assert float(np.max(np.abs(swapped.prompt_logits(ids) - reference.logits(ids)))) > 1e-2


def test_hf_folder_runs_split_across_ranks_like_transformers(tiny_models: Callable[..., Path]) -> None:
    from mindie_pack.runtime import open_model

    hf_dir = tiny_models(family="qwen2", dtype="bfloat16", num_kv_heads=4)
    reference = TransformersReference(hf_dir)
    for tp in (1, 2, 4):
        runtime = open_model(hf_dir, tp=tp)
        assert runtime.model.tp == tp
        ids = runtime.encode(PROMPT)
        assert float(np.max(np.abs(runtime.prompt_logits(ids) - reference.logits(ids)))) <= 1e-4
        assert runtime.generate([ids], GenerationParams(max_new_tokens=8, ignore_eos=True))[0].token_ids == \
            reference.greedy(ids, 8)


def test_tp_that_does_not_divide_the_heads_is_named(tiny_models: Callable[..., Path]) -> None:
    from mindie_pack.runtime import open_model

    with pytest.raises(PackError, match=r"--tp 3 must divide num_attention_heads \(4\)"):
        open_model(tiny_models(family="qwen2", dtype="float32", num_kv_heads=4), tp=3)


# -- repetition penalty ---------------------------------------------------------------------------------------
def test_repetition_penalty_equals_transformers_processor() -> None:
    import torch
    from transformers import RepetitionPenaltyLogitsProcessor

    rng = np.random.default_rng(3)
    logits = rng.standard_normal(50).astype(np.float32) * 4
    seen = [3, 7, 7, 12, 40, 3, 0]
    for penalty in (0.7, 1.3, 2.0):
        ours = apply_repetition_penalty(logits, seen, penalty)
        theirs = RepetitionPenaltyLogitsProcessor(penalty)(torch.tensor([seen]), torch.from_numpy(logits[None].copy()))
        np.testing.assert_allclose(ours, theirs[0].numpy(), rtol=1e-6)
        assert not np.allclose(ours, logits)


def test_repetition_penalty_changes_greedy_tokens_like_transformers(tiny_models: Callable[..., Path],
                                                                   tmp_path: Path) -> None:
    hf_dir = tiny_models(family="qwen2", dtype="float32", num_kv_heads=4)
    runtime = load_runtime(_build(hf_dir, tmp_path / "m", 2))
    reference = TransformersReference(hf_dir)
    ids = runtime.encode("MindIE MindIE MindIE MindIE")
    plain = runtime.generate([ids], GenerationParams(max_new_tokens=12, ignore_eos=True))[0].token_ids
    penalised = runtime.generate([ids], GenerationParams(max_new_tokens=12, repetition_penalty=1.8,
                                                         ignore_eos=True))[0].token_ids
    assert penalised != plain  # the penalty changes the greedy continuation here: a no-op penalty fails
    assert plain == reference.greedy(ids, 12)
    assert penalised == reference.greedy(ids, 12, repetition_penalty=1.8)
