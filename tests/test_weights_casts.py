"""Our casts against torch's (an independent implementation): ties to even, NaN, infinities, subnormals,
overflow; and the overflow check that refuses, or with clamp saturates, values a narrowing cast makes inf."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mindie_pack.weights.dtypes import CastOverflow, DType, RawTensor, cast, cast_checked

TORCH = {DType.FLOAT32: torch.float32, DType.FLOAT16: torch.float16, DType.BFLOAT16: torch.bfloat16}


def _torch_bits(values: torch.Tensor) -> np.ndarray:
    if values.dtype in (torch.bfloat16, torch.float16):
        return values.view(torch.int16).numpy().view(np.uint16)
    return values.numpy().view(np.uint32)


def _ours_bits(tensor: RawTensor) -> np.ndarray:
    return tensor.array.view(np.uint16) if tensor.dtype.info.itemsize == 2 else tensor.array.view(np.uint32)


def _edge_float32() -> np.ndarray:
    bf16_ulp_ties = np.array([0x3F808000, 0x3F818000, 0x3F80C000, 0x3F807FFF, 0x3F808001], dtype=np.uint32)
    f16_ties = np.array([1 + 2**-11, 1 + 3 * 2**-11, 2048 + 1, 2048 + 3], dtype=np.float32)
    specials = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 65504, 65519.99, 65520, -65520, 1e5, 6e-8, 3e-8,
                         1e-40, -1e-45, 3.3895314e38, 3.4028235e38], dtype=np.float32)
    rng = np.random.default_rng(3)
    random = (rng.standard_normal(4096) * np.exp(rng.uniform(-20, 20, 4096))).astype(np.float32)
    return np.concatenate([bf16_ulp_ties.view(np.float32), f16_ties, specials, random])


@pytest.mark.parametrize("target", [DType.BFLOAT16, DType.FLOAT16])
def test_float32_casts_equal_torch_bit_for_bit(target: DType) -> None:
    values = _edge_float32()
    ours = cast(RawTensor(DType.FLOAT32, values), target)
    theirs = torch.from_numpy(values).to(TORCH[target])
    nan = np.isnan(values)
    np.testing.assert_array_equal(_ours_bits(ours)[~nan], _torch_bits(theirs)[~nan])
    assert np.isnan(cast(ours, DType.FLOAT32).array[nan]).all()


@pytest.mark.parametrize(("source", "target"), [(DType.BFLOAT16, DType.FLOAT16), (DType.FLOAT16, DType.BFLOAT16),
                                                (DType.BFLOAT16, DType.FLOAT32), (DType.FLOAT16, DType.FLOAT32)])
def test_half_precision_casts_equal_torch(source: DType, target: DType) -> None:
    every_pattern = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    src_torch = torch.from_numpy(every_pattern.view(np.int16)).view(TORCH[source])
    raw = RawTensor(source, every_pattern if source is DType.BFLOAT16 else every_pattern.view(np.float16))
    ours = _ours_bits(cast(raw, target))
    theirs = _torch_bits(src_torch.to(TORCH[target]))
    nan = torch.isnan(src_torch).numpy()
    np.testing.assert_array_equal(ours[~nan], theirs[~nan])


def test_narrowing_overflow_is_refused_with_the_largest_value() -> None:
    values = torch.tensor([1.0, 1e5, -7e4, 3.0], dtype=torch.bfloat16)
    raw = RawTensor(DType.BFLOAT16, values.view(torch.int16).numpy().view(np.uint16))
    with pytest.raises(CastOverflow) as info:
        cast_checked(raw, DType.FLOAT16)
    assert info.value.largest == float(values.abs().max())  # 99840.0, the bf16 value nearest 1e5


def test_clamp_saturates_like_torch_clamp_then_cast() -> None:
    values = torch.tensor([1.0, 1e5, -7e4, float("inf"), float("nan"), 65504.0], dtype=torch.bfloat16)
    raw = RawTensor(DType.BFLOAT16, values.view(torch.int16).numpy().view(np.uint16))
    ours = cast_checked(raw, DType.FLOAT16, clamp=True).array
    limit = torch.finfo(torch.float16).max
    finite = torch.isfinite(values)
    expected = torch.where(finite, values.float().clamp(-limit, limit), values.float()).to(torch.float16).numpy()
    np.testing.assert_array_equal(ours[:4], expected[:4])  # an inf in the source stays inf
    assert np.isnan(ours[4]) and ours[5] == expected[5]


def test_existing_inf_and_nan_are_not_overflow() -> None:
    raw = RawTensor(DType.FLOAT32, np.array([np.inf, -np.inf, np.nan, 1.0], dtype=np.float32))
    out = cast_checked(raw, DType.FLOAT16).array
    assert np.isinf(out[:2]).all() and np.isnan(out[2]) and out[3] == 1.0
