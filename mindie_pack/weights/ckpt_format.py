"""The MindSpore `.ckpt` byte layout: a run of serialized protobuf `Checkpoint` messages, one tensor record
each, optionally followed by a `crc_num` trailer (reference: mindspore-ckpt.md §1.1, §1.3, §1.7).

Why hand-written: MindSpore's `save_checkpoint` needs every tensor in memory at once, and protobuf's
generated classes would hold each record's bytes twice. Writing the record framing ourselves lets the
converter append one tensor (or one 512 MiB piece of it) at a time.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from mindie_pack.weights.dtypes import DType, RawTensor
from mindie_pack.weights.fileio import StreamWriter

# MindSpore cuts tensors larger than 512 MiB into several records with the same tag (SLICE_SIZE).
CHUNK_BYTES = 512 * 1024 * 1024
CRC_MARKER = b"crc_num"
CRC_TRAILER_LEN = len(CRC_MARKER) + 10

_TAG_VALUE = 0x0A  # Checkpoint.value, and Value.tag: field 1, length-delimited
_TAG_TENSOR = 0x12  # Value.tensor, and TensorProto.tensor_type: field 2, length-delimited
_TAG_DIM = 0x08  # TensorProto.dims: field 1, varint (unpacked)
_TAG_CONTENT = 0x1A  # TensorProto.tensor_content: field 3, length-delimited


def encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low = value & 0x7F
        value >>= 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def record_header(name: str, dims: tuple[int, ...], type_str: str, content_len: int) -> bytes:
    """Everything of one record that precedes its `content_len` bytes of tensor content."""
    dims_bytes = b"".join(bytes([_TAG_DIM]) + encode_varint(d) for d in dims)
    type_bytes = type_str.encode()
    tensor_len = (
        len(dims_bytes) + 1 + len(encode_varint(len(type_bytes))) + len(type_bytes)
        + 1 + len(encode_varint(content_len)) + content_len
    )
    name_bytes = name.encode()
    value_len = (1 + len(encode_varint(len(name_bytes))) + len(name_bytes)
                 + 1 + len(encode_varint(tensor_len)) + tensor_len)
    return b"".join([
        bytes([_TAG_VALUE]), encode_varint(value_len),
        bytes([_TAG_VALUE]), encode_varint(len(name_bytes)), name_bytes,
        bytes([_TAG_TENSOR]), encode_varint(tensor_len),
        dims_bytes,
        bytes([_TAG_TENSOR]), encode_varint(len(type_bytes)), type_bytes,
        bytes([_TAG_CONTENT]), encode_varint(content_len),
    ])


class CkptWriter:
    """Appends tensors to a `.ckpt` file as they come; nothing but the current piece of data is held.

    Two ways to write: `write(name, tensor)` for a tensor in memory, or `begin(name, dims, dtype, nbytes)`
    followed by `feed(data)` calls that stream the tensor's content in row order (the record headers of
    MindSpore's 512 MiB pieces are inserted where they fall). `digest` is the file's hash, taken by the
    StreamWriter beside its writes; `buffers` is how many 4 MiB write buffers may be in flight.
    """

    def __init__(self, path: Path, *, crc: bool = False, chunk_bytes: int = CHUNK_BYTES, buffers: int = 2) -> None:
        if path.suffix != ".ckpt":
            raise ValueError(f"{path}: MindSpore only loads files ending in .ckpt")
        self.path = path
        self._crc_enabled = crc
        self._crc = 0
        self._chunk_bytes = chunk_bytes
        self._file: StreamWriter | None = StreamWriter(path, buffers=buffers)
        self.bytes_written = 0
        self.digest = self._file.digest  # of the whole file, trailer included, for the manifest
        self._record: tuple[bytes, tuple[int, ...], str] | None = None
        self._record_left = 0
        self._piece_left = 0

    def _emit(self, data: bytes | memoryview, owned: bool = False) -> None:
        assert self._file is not None
        self._file.write(data, owned=owned)
        self.bytes_written += len(data)
        if self._crc_enabled:
            self._crc = binascii.crc32(data, self._crc)

    def begin(self, name: str, dims: tuple[int, ...], dtype: DType, nbytes: int) -> None:
        """Start a record of `nbytes` content bytes; an empty tensor is written at once."""
        if self._record_left:
            raise ValueError(f"{self.path}: record {self._record!r} is incomplete")
        self._record = (name.encode(), dims, dtype.info.mindspore)
        self._record_left, self._piece_left = nbytes, 0
        if nbytes == 0:
            self._emit(record_header(name, dims, dtype.info.mindspore, 0))

    def feed(self, data: memoryview, *, owned: bool = False) -> None:
        """The next bytes of the record's content; `owned`: they will not change (StreamWriter.write)."""
        assert self._record is not None
        if len(data) > self._record_left:
            raise ValueError(f"{self.path}: more data than the record {self._record[0]!r} holds")
        while len(data):
            self._start_piece()
            n = min(len(data), self._piece_left)
            self._emit(data[:n], owned)
            data = data[n:]
            self._piece_left -= n
            self._record_left -= n

    def _start_piece(self) -> None:
        if self._piece_left == 0 and self._record is not None and self._record_left:
            name, dims, type_str = self._record
            self._piece_left = min(self._chunk_bytes, self._record_left)
            self._emit(record_header(name.decode(), dims, type_str, self._piece_left))

    def feed_rows(self, rows: list[memoryview]) -> None:
        """Like `feed(owned=True)` for content given as rows (one rank's columns of a block of rows): written
        without gathering them first, unless a 512 MiB piece boundary or the CRC needs them together."""
        assert self._record is not None and self._file is not None
        nbytes = sum(len(row) for row in rows)
        if nbytes > self._record_left:
            raise ValueError(f"{self.path}: more data than the record {self._record[0]!r} holds")
        self._start_piece()
        if self._crc_enabled or nbytes > self._piece_left:
            self.feed(memoryview(b"".join(rows)), owned=True)
            return
        self._file.write_rows(rows)
        self.bytes_written += nbytes
        self._piece_left -= nbytes
        self._record_left -= nbytes

    def write(self, name: str, tensor: RawTensor) -> None:
        dims = tuple(tensor.array.shape)  # taken before the copy: ascontiguousarray turns 0-d into 1-d
        array = tensor.array if tensor.array.flags.c_contiguous else np.ascontiguousarray(tensor.array)
        content = memoryview(array.reshape(-1).view(np.uint8)) if array.size else memoryview(b"")
        self.begin(name, dims, tensor.dtype, len(content))
        self.feed(content)

    def close(self, *, sync: bool = False) -> None:
        """Finish the file (CRC trailer); with `sync`, wait until its data is on disk."""
        if self._file is None:
            return
        try:
            if self._crc_enabled:
                self._crc_enabled = False  # the trailer is not part of its own checksum
                self._emit(CRC_MARKER + self._crc.to_bytes(10, "big"))
        finally:
            file, self._file = self._file, None
            file.close(sync=sync)

    def __enter__(self) -> CkptWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- reading (our own files, for verify and the runtime, without loading whole files) ------------------


@dataclass(frozen=True)
class CkptRecord:
    name: str
    dims: tuple[int, ...]
    type_str: str
    pieces: tuple[tuple[int, int], ...]  # (offset, length) of each content piece in the file
    span: tuple[int, int] = (0, 0)  # [start, end) of the record's bytes (all its pieces, headers included)

    @property
    def dtype(self) -> DType:
        return DType.from_mindspore(self.type_str)


class CkptFormatError(ValueError):
    pass


def _read_varint(buf: bytes | memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(buf):
            raise CkptFormatError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _parse_tensor_fields(head: bytes, tensor_start: int) -> tuple[tuple[int, ...], str, int, int]:
    """Parse TensorProto fields up to tensor_content; return dims, type, content offset (in head) and length."""
    pos = tensor_start
    dims: list[int] = []
    type_str = ""
    while pos < len(head):
        key, pos = _read_varint(head, pos)
        field, wire = key >> 3, key & 7
        if field == 1 and wire == 0:
            value, pos = _read_varint(head, pos)
            dims.append(value)
        elif field == 1 and wire == 2:  # packed dims (written by other tools)
            length, pos = _read_varint(head, pos)
            end = pos + length
            while pos < end:
                value, pos = _read_varint(head, pos)
                dims.append(value)
        elif field == 2 and wire == 2:
            length, pos = _read_varint(head, pos)
            type_str = bytes(head[pos:pos + length]).decode()
            pos += length
        elif field == 3 and wire == 2:
            length, pos = _read_varint(head, pos)
            return tuple(dims), type_str, pos, length
        else:
            raise CkptFormatError(f"unexpected field {field} (wire type {wire}) in a tensor record")
    raise CkptFormatError("tensor record without content")


def scan_records(path: Path) -> Iterator[CkptRecord]:
    """Walk a checkpoint's records, reading only their headers; consecutive same-name records are merged."""
    size = path.stat().st_size
    with path.open("rb") as handle:
        if size >= CRC_TRAILER_LEN:
            handle.seek(size - CRC_TRAILER_LEN)
            if handle.read(len(CRC_MARKER)) == CRC_MARKER:
                size -= CRC_TRAILER_LEN
        offset = 0
        pending: CkptRecord | None = None
        while offset < size:
            handle.seek(offset)
            head = handle.read(min(4096, size - offset))
            key, pos = _read_varint(head, 0)
            if key != _TAG_VALUE:
                raise CkptFormatError(f"byte {offset}: expected a Checkpoint.value record")
            value_len, pos = _read_varint(head, pos)
            record_end = offset + pos + value_len
            if record_end > size:
                raise CkptFormatError(f"byte {offset}: record runs past the end of the file (truncated)")
            key, pos = _read_varint(head, pos)
            name_len, pos = _read_varint(head, pos)
            name = bytes(head[pos:pos + name_len]).decode()
            pos += name_len
            key, pos = _read_varint(head, pos)
            if key != _TAG_TENSOR:
                raise CkptFormatError(f"record {name!r}: not a tensor value")
            _, pos = _read_varint(head, pos)
            dims, type_str, content_pos, content_len = _parse_tensor_fields(head, pos)
            piece = (offset + content_pos, content_len)
            if pending is not None and pending.name == name:
                pending = CkptRecord(name, dims, type_str, pending.pieces + (piece,), (pending.span[0], record_end))
            else:
                if pending is not None:
                    yield pending
                pending = CkptRecord(name, dims, type_str, (piece,), (offset, record_end))
            offset = record_end
        if pending is not None:
            yield pending


def read_record(path: Path, record: CkptRecord) -> RawTensor:
    dtype = record.dtype
    parts = []
    with path.open("rb") as handle:
        for offset, length in record.pieces:
            handle.seek(offset)
            parts.append(handle.read(length))
    data = b"".join(parts)
    array = np.frombuffer(data, dtype=dtype.info.storage).reshape(record.dims)
    return RawTensor(dtype, array)


def verify_crc(path: Path) -> bool | None:
    """True/False when the file carries a CRC trailer, None when it has none."""
    data = path.read_bytes()
    if len(data) < CRC_TRAILER_LEN or data[-CRC_TRAILER_LEN:-10] != CRC_MARKER:
        return None
    return binascii.crc32(data[:-CRC_TRAILER_LEN]) == int.from_bytes(data[-10:], "big")
