"""The capacity plan's per-rank weight bytes equal what `build` writes per rank: every tensor of each rank's
.ckpt, read back by MindSpore (the oracle), summed. Several families, world sizes, dtypes and vocab splits."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.convert import rank_file_path
from mindie_pack.builder.options import BuildOptions
from mindie_pack.config import plan_capacity

from build_helpers import write_mindformers_checkout

CASES = [  # family, tp, dtype, vocab_emb_dp (None: the family's default), tiny-model fields
    ("llama", 1, "bfloat16", None, {}),
    ("llama", 2, "bfloat16", None, {}),  # Llama replicates embedding and lm_head by default
    ("llama", 2, "float16", False, {}),  # split by vocabulary rows
    ("llama", 2, "float32", None, {"tie_word_embeddings": True}),
    ("qwen2", 2, "float32", None, {}),  # Qwen2 splits by default
    ("qwen2", 2, "bfloat16", True, {}),
    ("baichuan2", 2, "bfloat16", None, {"num_kv_heads": 4}),  # float16 NormHead, always split
]


def _ckpt_bytes(path: Path) -> int:
    import mindspore as ms

    return sum(int(parameter.nbytes) for parameter in ms.load_checkpoint(str(path)).values())


@pytest.mark.parametrize("family, tp, dtype, vocab_emb_dp, fields", CASES,
                         ids=[f"{c[0]}-tp{c[1]}-{c[2]}-emb_dp{c[3]}{'-tied' if c[4].get('tie_word_embeddings') else ''}"
                              for c in CASES])
def test_plan_equals_the_built_rank_files(tiny_models: Callable[..., Path], tmp_path: Path, family: str, tp: int,
                                          dtype: str, vocab_emb_dp: bool | None, fields: dict[str, object]) -> None:
    hf = tiny_models(family=family, dtype="float32", **fields)
    out = tmp_path / "built"
    build_model_dir(BuildOptions(model_dir=hf, output_dir=out, tp=tp, dtype=dtype, name="plan-check",
                                 vocab_emb_dp=vocab_emb_dp,
                                 mindformers_src=write_mindformers_checkout(tmp_path / "mf")))
    written = [_ckpt_bytes(rank_file_path(out / "weights", rank)) for rank in range(tp)]
    assert len(set(written)) == 1  # every rank holds the same amount
    plan = plan_capacity(hf, world_size=tp, npu_mem_size_gb=1, dtype=dtype, vocab_emb_dp=vocab_emb_dp)
    assert plan.weight_bytes_per_rank == written[0]
    assert plan.dtype == dtype
    from_dir = plan_capacity(out, world_size=tp, npu_mem_size_gb=1)  # the built directory: planned as built
    assert from_dir.weight_bytes_per_rank == written[0] and from_dir.errors == []
    if tp > 1:
        other = plan_capacity(out, world_size=1, npu_mem_size_gb=1)
        assert other.errors[0] == f"{out} was built for worldSize {tp} (--tp {tp}), not 1: rebuild it, or plan " \
                                  "with that world size"
