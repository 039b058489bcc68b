"""`build` for every family x tp x dtype, checked with MindSpore and an independent oracle of names and splits."""

from __future__ import annotations

import stat
from collections.abc import Callable
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.options import BuildOptions
from mindie_pack.builder.verify import verify_model_dir

from build_helpers import expected_tensors, write_mindformers_checkout

MS_DTYPES = {"float32": ms.float32, "float16": ms.float16, "bfloat16": ms.bfloat16}

# (family, tp, stored dtype, tiny-model fields). tp 4 needs 4 KV heads; Baichuan2 has no GQA.
MATRIX = [
    ("llama", 1, "float32", {"shards": 2}),
    ("llama", 2, "bfloat16", {"shards": 3}),
    ("llama", 2, "float16", {}),
    ("llama", 4, "bfloat16", {"num_kv_heads": 4}),
    ("qwen2", 1, "bfloat16", {"tie_word_embeddings": True}),
    ("qwen2", 2, "float32", {"shards": 2}),
    ("qwen2", 2, "bfloat16", {"tie_word_embeddings": True}),
    ("qwen2", 4, "float16", {"num_kv_heads": 4}),
    ("baichuan2", 1, "bfloat16", {"num_kv_heads": 4}),
    ("baichuan2", 2, "float32", {"num_kv_heads": 4, "shards": 2}),
    ("baichuan2", 4, "float16", {"num_kv_heads": 4}),
]
DEFAULT_VOCAB_SPLIT = {"llama": False, "qwen2": True, "baichuan2": False}  # vocab_emb_dp defaults per family


@pytest.fixture(scope="module")
def mindformers_src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_mindformers_checkout(tmp_path_factory.mktemp("mindformers"))


@pytest.mark.parametrize(("family", "tp", "dtype", "fields"), MATRIX, ids=lambda v: str(v) if not isinstance(v, dict)
                         else ",".join(f"{k}={x}" for k, x in v.items()))
def test_build_matrix(family: str, tp: int, dtype: str, fields: dict[str, object], tiny_models: Callable[..., Path],
                      mindformers_src: Path, tmp_path: Path) -> None:
    hf_dir = tiny_models(family=family, **fields)
    out = tmp_path / "model"
    result = build_model_dir(BuildOptions(
        model_dir=hf_dir, output_dir=out, tp=tp, dtype=dtype,
        mindformers_src=mindformers_src if family == "baichuan2" else None,
    ))
    assert result.output_dir == out

    rank_dirs = sorted(p.name for p in (out / "weights").iterdir())
    assert rank_dirs == [f"rank_{i}" for i in range(tp)]
    for rank in range(tp):
        assert [p.name for p in (out / "weights" / f"rank_{rank}").iterdir()] == [f"checkpoint_{rank}.ckpt"]

    expected = expected_tensors(hf_dir, family, DEFAULT_VOCAB_SPLIT[family] and tp > 1, dtype)
    ranks = [ms.load_checkpoint(str(out / "weights" / f"rank_{r}" / f"checkpoint_{r}.ckpt")) for r in range(tp)]
    for loaded in ranks:
        assert set(loaded) == set(expected)
    for name, (full, axis) in expected.items():
        parts = []
        for loaded in ranks:
            param = loaded[name]
            want_dtype = ms.float32 if any(n in name for n in ("attention_norm", "ffn_norm", "norm_out")) \
                else (ms.float16 if family == "baichuan2" and name == "lm_head.weight" else MS_DTYPES[dtype])
            assert param.dtype == want_dtype, name
            want_shape = list(full.shape)
            if axis is not None:
                want_shape[axis] //= tp
            assert list(param.shape) == want_shape, name
            parts.append(param.astype(ms.float32).asnumpy())
        merged = parts[0] if axis is None else np.concatenate(parts, axis=axis)
        if axis is None:
            for part in parts[1:]:
                np.testing.assert_array_equal(part, parts[0])
        np.testing.assert_array_equal(merged, full, err_msg=name)

    report = verify_model_dir(out, reference=hf_dir)
    assert report.ok, [c.detail for c in report.checks if not c.ok]
    assert [c.name for c in report.checks] == ["manifest", "yaml", "layout", "mindspore", "reference"]

    for path in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o750 if path.is_dir() else 0o640), f"{path}: {oct(mode)}"


def test_bin_weights_are_converted_like_safetensors(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    st_dir = tiny_models(family="llama")
    bin_dir = tiny_models(family="llama", weight_format="bin", shards=2)
    a, b = tmp_path / "a", tmp_path / "b"
    build_model_dir(BuildOptions(model_dir=st_dir, output_dir=a, tp=2))
    build_model_dir(BuildOptions(model_dir=bin_dir, output_dir=b, tp=2))
    for rank in range(2):
        # Records follow the order of the input files (one sequential read), so compare them by name.
        rel = f"weights/rank_{rank}/checkpoint_{rank}.ckpt"
        ours, theirs = ms.load_checkpoint(str(a / rel)), ms.load_checkpoint(str(b / rel))
        assert sorted(ours) == sorted(theirs)
        for name in ours:
            assert ours[name].dtype == theirs[name].dtype, name
            np.testing.assert_array_equal(ours[name].float().asnumpy(), theirs[name].float().asnumpy(), err_msg=name)
    assert verify_model_dir(b, reference=bin_dir).ok


def test_vocab_emb_dp_override_splits_embedding_and_lm_head(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    hf_dir = tiny_models(family="llama")
    out = tmp_path / "m"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=2, vocab_emb_dp=False))
    rank0 = ms.load_checkpoint(str(out / "weights/rank_0/checkpoint_0.ckpt"))
    assert list(rank0["model.tok_embeddings.embedding_weight"].shape) == [192, 64]
    assert list(rank0["lm_head.weight"].shape) == [192, 64]
    assert verify_model_dir(out, reference=hf_dir).ok
