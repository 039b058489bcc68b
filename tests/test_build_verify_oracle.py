"""`verify` is an independent oracle: a wrong split rule or a wrong cast in the build (shared by verify's
plan) is still caught; MindSpore's free-memory check cannot fail a correct model."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import mindspore as ms
import numpy as np
import pytest
from mindspore.train import serialization

from mindie_pack.builder import convert, mindspore_check
from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.model_dir import open_model_dir
from mindie_pack.builder.options import BuildOptions
from mindie_pack.builder.report import VerifyReport
from mindie_pack.builder.shards import rank_indexes
from mindie_pack.builder.verify import verify_model_dir
from mindie_pack.models.base import ModelFamily
from mindie_pack.weights.ckpt_format import CkptRecord
from mindie_pack.weights.dtypes import DType, RawTensor


def test_a_wrong_split_axis_shared_by_build_and_plan_is_caught(tiny_models: Callable[..., Path], tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    original = ModelFamily.tensor_specs

    def wrong_wo_axis(self, dims, plan, dtype):  # type: ignore[no-untyped-def]
        return [dataclasses.replace(s, split_axis=0) if s.target.endswith("attention.wo.weight") else s
                for s in original(self, dims, plan, dtype)]

    monkeypatch.setattr(ModelFamily, "tensor_specs", wrong_wo_axis)
    hf_dir = tiny_models(family="llama")
    out = tmp_path / "m"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=2))
    report = verify_model_dir(out, reference=hf_dir)
    assert [c.name for c in report.checks if not c.ok] == ["reference"]
    assert "attention.wo.weight" in report.checks[-1].detail and "dim 1" in report.checks[-1].detail


def test_a_wrong_cast_in_the_build_is_caught(tiny_models: Callable[..., Path], tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    def truncating_cast(tensor: RawTensor, target: DType, *, clamp: bool = False) -> RawTensor:
        if tensor.dtype is DType.FLOAT32 and target is DType.BFLOAT16:  # truncate instead of rounding
            return RawTensor(target, (tensor.array.view(np.uint32) >> 16).astype(np.uint16))
        return original(tensor, target, clamp=clamp)

    original = convert.cast_checked
    monkeypatch.setattr(convert, "cast_checked", truncating_cast)
    hf_dir = tiny_models(family="llama", dtype="float32")
    out = tmp_path / "m"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, dtype="bfloat16"))
    report = verify_model_dir(out, reference=hf_dir)
    assert not report.ok
    assert "cast to BFloat16 by torch" in report.checks[-1].detail


def test_mindspore_free_memory_check_cannot_fail_a_correct_model(tiny_models: Callable[..., Path], tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "m"
    hf_dir = tiny_models(family="qwen2")
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out))
    rank_file = out / "weights/rank_0/checkpoint_0.ckpt"
    free = rank_file.stat().st_size // 2  # a host whose RAM is full of page cache
    monkeypatch.setattr(serialization, "_get_available_memory", lambda: free)
    with pytest.raises(Exception, match="memory"):
        ms.load_checkpoint(str(rank_file))  # what verify used to do
    # in this process, where the patched free memory applies (verify runs the same function in a child)
    monkeypatch.setattr(mindspore_check, "SAMPLE_BYTES", 4096)
    monkeypatch.setattr(mindspore_check, "BATCH_BYTES", free // 2)
    built = open_model_dir(out)
    for full in (False, True):
        report = VerifyReport(out)
        mindspore_check.check_mindspore_load(built, rank_indexes(built), report, full=full)
        assert [(c.name, c.ok) for c in report.checks] == [("mindspore", True)], report.as_dict()
    assert "every tensor" in report.checks[0].detail
    assert verify_model_dir(out, reference=hf_dir, mindspore_full=True).ok


def test_mindspore_values_are_compared_block_by_block_to_the_last_row(tiny_models: Callable[..., Path],
                                                                      tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The MindSpore check compares a few rows at a time (flat memory for large sample tensors): every block
    counts, a difference in the last row of a bf16 matrix is found, an equal model passes."""
    out = tmp_path / "m"
    build_model_dir(BuildOptions(model_dir=tiny_models(family="llama"), output_dir=out))
    built = open_model_dir(out)
    monkeypatch.setattr(mindspore_check, "COMPARE_BYTES", 64)  # a few rows per block
    report = VerifyReport(out)
    mindspore_check.check_mindspore_load(built, rank_indexes(built), report, full=True)
    assert [(c.name, c.ok) for c in report.checks] == [("mindspore", True)], report.as_dict()

    target = "model.layers.0.attention.wq.weight"
    real_read = mindspore_check.read_record

    def misread(path: Path, record: CkptRecord) -> RawTensor:
        tensor = real_read(path, record)
        if record.name != target:
            return tensor
        array = tensor.array.copy()
        array[-1, -1] ^= 0x0100  # flips an exponent bit of the very last bf16 value
        return RawTensor(tensor.dtype, array)

    monkeypatch.setattr(mindspore_check, "read_record", misread)
    report = VerifyReport(out)
    mindspore_check.check_mindspore_load(built, rank_indexes(built), report, full=True)
    assert not report.checks[-1].ok
    assert report.checks[-1].detail.endswith(f"tensor {target!r}: MindSpore reads other values than our reader")
