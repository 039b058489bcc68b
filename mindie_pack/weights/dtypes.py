"""Tensor dtypes as they appear in safetensors, MindSpore checkpoints and MindFormers yaml, and casts
between them.

numpy has no bfloat16, so bfloat16 data is carried as its raw uint16 bit pattern (`RawTensor.array`);
the cast helpers convert through float32 with round-to-nearest-even, which is what MindSpore and torch do.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np


@dataclass(frozen=True)
class _DTypeInfo:
    name: str  # yaml / CLI name
    safetensors: str  # safetensors header code
    mindspore: str  # MindSpore checkpoint `tensor_type`
    storage: np.dtype  # numpy dtype holding the raw bits
    itemsize: int


class DType(Enum):
    FLOAT32 = _DTypeInfo("float32", "F32", "Float32", np.dtype("<f4"), 4)
    FLOAT16 = _DTypeInfo("float16", "F16", "Float16", np.dtype("<f2"), 2)
    BFLOAT16 = _DTypeInfo("bfloat16", "BF16", "BFloat16", np.dtype("<u2"), 2)
    FLOAT64 = _DTypeInfo("float64", "F64", "Float64", np.dtype("<f8"), 8)
    INT64 = _DTypeInfo("int64", "I64", "Int64", np.dtype("<i8"), 8)
    INT32 = _DTypeInfo("int32", "I32", "Int32", np.dtype("<i4"), 4)
    INT8 = _DTypeInfo("int8", "I8", "Int8", np.dtype("i1"), 1)
    UINT8 = _DTypeInfo("uint8", "U8", "UInt8", np.dtype("u1"), 1)
    BOOL = _DTypeInfo("bool", "BOOL", "Bool", np.dtype("?"), 1)

    @property
    def info(self) -> _DTypeInfo:
        return self.value

    @property
    def is_float(self) -> bool:
        return self in (DType.FLOAT32, DType.FLOAT16, DType.BFLOAT16, DType.FLOAT64)

    @classmethod
    def _by(cls, field: str, value: str) -> DType:
        for member in cls:
            if getattr(member.info, field) == value:
                return member
        raise KeyError(value)

    @classmethod
    def from_name(cls, name: str) -> DType:
        return cls._by("name", name)

    @classmethod
    def from_safetensors(cls, code: str) -> DType:
        return cls._by("safetensors", code)

    @classmethod
    def from_mindspore(cls, type_str: str) -> DType:
        return cls._by("mindspore", type_str)


# HF config.json `torch_dtype` values -> our dtypes.
TORCH_DTYPE_NAMES = {
    "bfloat16": DType.BFLOAT16,
    "float16": DType.FLOAT16,
    "half": DType.FLOAT16,
    "float32": DType.FLOAT32,
    "float": DType.FLOAT32,
}

TARGET_DTYPES = (DType.BFLOAT16, DType.FLOAT16, DType.FLOAT32)


def target_dtype(requested: str | None, torch_dtype: object, origin: str) -> DType:
    """The stored dtype of a build: `--dtype` when given, else the HF `torch_dtype` (bfloat16 when it has none).
    `origin` names the config file in a refusal."""
    from mindie_pack.errors import PackError

    if requested is not None:
        try:
            dtype: DType | None = DType.from_name(requested)
        except KeyError:
            dtype = None
        if dtype not in TARGET_DTYPES:
            raise PackError(f"--dtype {requested!r}: expected one of bfloat16, float16, float32")
        return dtype  # type: ignore[return-value]
    if torch_dtype is None:
        return DType.BFLOAT16
    if torch_dtype not in TORCH_DTYPE_NAMES:
        raise PackError(f"{origin}: torch_dtype {torch_dtype!r} is not supported (expected bfloat16, float16 or "
                        "float32); pass --dtype")
    return TORCH_DTYPE_NAMES[torch_dtype]  # type: ignore[index]


@dataclass
class RawTensor:
    """A tensor's raw little-endian C-order data plus its logical dtype."""

    dtype: DType
    array: np.ndarray  # dtype == self.dtype.info.storage

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


def bfloat16_bits_to_float32(bits: np.ndarray) -> np.ndarray:
    return np.left_shift(bits, 16, dtype=np.uint32).view(np.float32)


def float32_to_bfloat16_bits(values: np.ndarray) -> np.ndarray:
    """Round to nearest even, NaN kept NaN (quiet), as MindSpore's and torch's casts do."""
    u32 = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    rounded = ((u32 + 0x7FFF + ((u32 >> 16) & 1)) >> 16).astype(np.uint16)
    nan = np.isnan(values)
    if nan.any():
        rounded[nan] = ((u32[nan] >> 16) | 0x0040).astype(np.uint16)
    return rounded


def to_float32(tensor: RawTensor) -> np.ndarray:
    if tensor.dtype is DType.BFLOAT16:
        return bfloat16_bits_to_float32(tensor.array)
    with np.errstate(over="ignore"):
        return tensor.array.astype(np.float32, copy=False)


def cast(tensor: RawTensor, target: DType) -> RawTensor:
    """Cast floating-point data; the identity cast returns the input untouched (no copy)."""
    if tensor.dtype is target:
        return tensor
    if not (tensor.dtype.is_float and target.is_float):
        raise TypeError(f"cannot cast {tensor.dtype.info.name} to {target.info.name}")
    as_f32 = to_float32(tensor)
    if target is DType.BFLOAT16:
        return RawTensor(target, float32_to_bfloat16_bits(as_f32))
    with np.errstate(over="ignore"):  # overflow to inf is IEEE behaviour; cast_checked reports it
        return RawTensor(target, as_f32.astype(target.info.storage))


# Largest finite value of each float type (float16: 65504; bfloat16: 0x7F7F; float32: FLT_MAX).
FINITE_MAX = {
    DType.FLOAT16: float(np.finfo(np.float16).max),
    DType.BFLOAT16: float(bfloat16_bits_to_float32(np.array([0x7F7F], dtype=np.uint16))[0]),
    DType.FLOAT32: float(np.finfo(np.float32).max),
    DType.FLOAT64: float(np.finfo(np.float64).max),
}


class CastOverflow(ValueError):
    """A finite value became infinite in a narrowing cast; `largest` is the largest finite |value| seen."""

    def __init__(self, target: DType, largest: float) -> None:
        super().__init__(f"values up to {largest:.6g} overflow {target.info.name} (largest finite "
                         f"{FINITE_MAX[target]:.6g})")
        self.target = target
        self.largest = largest


def _is_inf(tensor: RawTensor) -> np.ndarray:
    # On the bit patterns: numpy's float16 isinf is an emulated scalar loop, ~10x slower than this.
    if tensor.dtype is DType.BFLOAT16:
        return (tensor.array & 0x7FFF) == 0x7F80
    if tensor.dtype is DType.FLOAT16:
        return (tensor.array.view(np.uint16) & 0x7FFF) == 0x7C00
    return np.isinf(tensor.array)


def largest_finite_abs(tensor: RawTensor) -> float:
    values = to_float32(tensor) if tensor.dtype is not DType.FLOAT64 else tensor.array
    finite = np.abs(values[np.isfinite(values)])
    return float(finite.max()) if finite.size else 0.0


def cast_checked(tensor: RawTensor, target: DType, *, clamp: bool = False) -> RawTensor:
    """`cast`, but a finite value that would become ±inf raises CastOverflow, or with `clamp` is saturated
    to the target's largest finite value. Infinities and NaNs already in the source pass through unchanged."""
    if tensor.dtype is target:
        return tensor
    result = cast(tensor, target)
    infinite = _is_inf(result)
    if not infinite.any():  # the common case: one cheap test
        return result
    overflow = infinite & ~_is_inf(tensor)
    if tensor.dtype is not DType.BFLOAT16:
        overflow &= ~np.isnan(tensor.array)
    if not overflow.any():
        return result
    if not clamp:
        raise CastOverflow(target, largest_finite_abs(tensor))
    limit = FINITE_MAX[target]
    values = to_float32(tensor) if tensor.dtype is not DType.FLOAT64 else tensor.array.copy()
    values = np.where(overflow.reshape(values.shape), np.copysign(limit, values), values)
    return cast(RawTensor(DType.FLOAT32 if values.dtype == np.float32 else DType.FLOAT64, values), target)
