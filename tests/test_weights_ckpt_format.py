"""The streaming .ckpt writer against MindSpore itself: byte identity, chunking, CRC trailer, our reader."""

from __future__ import annotations

from pathlib import Path

import mindspore as ms
import numpy as np
import pytest

from mindie_pack.weights.ckpt_format import CkptWriter, read_record, scan_records, verify_crc
from mindie_pack.weights.dtypes import DType, RawTensor, float32_to_bfloat16_bits

RNG = np.random.default_rng(7)


def _tensors() -> dict[str, RawTensor]:
    f32 = RNG.standard_normal((6, 5)).astype(np.float32)
    return {
        "model.tok_embeddings.embedding_weight": RawTensor(DType.FLOAT32, f32),
        "model.layers.0.attention.wq.weight": RawTensor(DType.FLOAT16, f32.astype(np.float16)),
        "model.layers.0.attention.wk.weight": RawTensor(DType.BFLOAT16, float32_to_bfloat16_bits(f32[:3])),
        "model.norm_out.weight": RawTensor(DType.FLOAT32, RNG.standard_normal(5).astype(np.float32)),
        "scalar": RawTensor(DType.FLOAT32, np.array(3.5, dtype=np.float32)),
    }


def _to_mindspore(tensor: RawTensor) -> ms.Tensor:
    if tensor.dtype is DType.BFLOAT16:
        widened = (tensor.array.astype(np.uint32) << 16).view(np.float32)
        return ms.Tensor(widened).astype(ms.bfloat16)
    return ms.Tensor(tensor.array)


def _write(path: Path, tensors: dict[str, RawTensor], **kwargs: object) -> Path:
    with CkptWriter(path, **kwargs) as writer:  # type: ignore[arg-type]
        for name, tensor in tensors.items():
            writer.write(name, tensor)
    return path


def test_bytes_identical_to_mindspore_save_checkpoint(tmp_path: Path) -> None:
    tensors = _tensors()
    ours = _write(tmp_path / "ours.ckpt", tensors)
    theirs = tmp_path / "theirs.ckpt"
    ms.save_checkpoint([{"name": n, "data": _to_mindspore(t)} for n, t in tensors.items()], str(theirs))
    assert ours.read_bytes() == theirs.read_bytes()


def test_writer_hash_and_size_match_the_file(tmp_path: Path) -> None:
    import xxhash

    path = tmp_path / "a.ckpt"
    with CkptWriter(path) as writer:
        for name, tensor in _tensors().items():
            writer.write(name, tensor)
    assert writer.bytes_written == path.stat().st_size
    assert writer.digest.hexdigest() == xxhash.xxh3_128_hexdigest(path.read_bytes())


def test_chunked_tensor_is_reassembled_by_mindspore_and_by_our_reader(tmp_path: Path) -> None:
    big = RawTensor(DType.FLOAT32, RNG.standard_normal((10, 7)).astype(np.float32))  # 280 bytes
    path = _write(tmp_path / "chunked.ckpt", {"big": big, "after": _tensors()["model.norm_out.weight"]}, chunk_bytes=64)
    records = list(scan_records(path))
    assert [r.name for r in records] == ["big", "after"]
    assert len(records[0].pieces) == 5  # ceil(280 / 64)
    np.testing.assert_array_equal(read_record(path, records[0]).array, big.array)
    loaded = ms.load_checkpoint(str(path))
    np.testing.assert_array_equal(loaded["big"].asnumpy(), big.array)
    assert tuple(loaded["big"].shape) == (10, 7)


def test_reader_round_trips_every_dtype_and_shape(tmp_path: Path) -> None:
    tensors = _tensors()
    path = _write(tmp_path / "rt.ckpt", tensors)
    records = {r.name: r for r in scan_records(path)}
    assert list(records) == list(tensors)
    for name, tensor in tensors.items():
        back = read_record(path, records[name])
        assert back.dtype is tensor.dtype
        assert back.array.shape == tensor.array.shape
        assert back.array.tobytes() == tensor.array.tobytes()


def test_bfloat16_values_as_mindspore_reads_them(tmp_path: Path) -> None:
    values = np.array([1.0, -2.5, 3.140625, 65280.0], dtype=np.float32)  # exactly representable in bf16
    path = _write(tmp_path / "bf16.ckpt", {"w": RawTensor(DType.BFLOAT16, float32_to_bfloat16_bits(values))})
    loaded = ms.load_checkpoint(str(path))["w"]
    assert loaded.dtype == ms.bfloat16
    np.testing.assert_array_equal(loaded.astype(ms.float32).asnumpy(), values)


def test_crc_trailer_is_accepted_by_mindspore_and_catches_corruption(tmp_path: Path) -> None:
    path = _write(tmp_path / "crc.ckpt", _tensors(), crc=True)
    assert verify_crc(path) is True
    ms.load_checkpoint(str(path), crc_check=True)
    data = bytearray(path.read_bytes())
    data[40] ^= 0xFF
    path.write_bytes(bytes(data))
    assert verify_crc(path) is False
    with pytest.raises((ValueError, RuntimeError)):
        ms.load_checkpoint(str(path), crc_check=True)


def test_no_crc_trailer_by_default(tmp_path: Path) -> None:
    assert verify_crc(_write(tmp_path / "plain.ckpt", _tensors())) is None


def test_writer_refuses_a_name_mindspore_would_not_load(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.ckpt"):
        CkptWriter(tmp_path / "weights.bin")


@pytest.mark.parametrize("chunk_bytes", [1 << 20, 64])  # rows within one piece; rows across piece boundaries
def test_column_split_rows_written_as_vectors_load_in_mindspore(tmp_path: Path, chunk_bytes: int) -> None:
    """feed_rows: rank 1's columns of a bf16 matrix, given as 1500 strided rows (more than one pwritev)."""
    full = float32_to_bfloat16_bits(RNG.standard_normal((1500, 6)).astype(np.float32))
    part = full[:, 3:]
    after = _tensors()["model.norm_out.weight"]  # _tensors() draws new values on every call
    path = tmp_path / "cols.ckpt"
    with CkptWriter(path, chunk_bytes=chunk_bytes) as writer:
        writer.begin("w", part.shape, DType.BFLOAT16, part.nbytes)
        rows = part.view(np.uint8)
        writer.feed_rows([memoryview(rows[i]) for i in range(700)])
        writer.feed_rows([memoryview(rows[i]) for i in range(700, 1500)])
        writer.write("after", after)
    assert writer.bytes_written == path.stat().st_size
    import xxhash

    assert writer.digest.hexdigest() == xxhash.xxh3_128_hexdigest(path.read_bytes())
    loaded = ms.load_checkpoint(str(path))
    widened = (np.ascontiguousarray(part).astype(np.uint32) << 16).view(np.float32)
    np.testing.assert_array_equal(loaded["w"].float().asnumpy(), widened)
    np.testing.assert_array_equal(loaded["after"].asnumpy(), after.array)
