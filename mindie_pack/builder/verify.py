"""`mindie-pack verify`: prove a model directory is what its manifest says and what MindSpore will load."""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mindie_pack.builder.convert import STEP_BYTES, rank_file_path
from mindie_pack.builder.manifest import MANIFEST_NAME, read_manifest
from mindie_pack.builder.model_dir import BuiltModelDir, open_model_dir
from mindie_pack.builder.oracle import Reference, expected_for, rank_part, raw_bytes, row_blocks, torch_cast
from mindie_pack.builder.shards import RankIndex, rank_indexes
from mindie_pack.errors import PackError
from mindie_pack.hashing import ALGORITHMS, OUTPUT_HASH, hash_file, record_hash
from mindie_pack.weights.ckpt_format import CkptRecord, read_record
from mindie_pack.weights.dtypes import to_float32
from mindie_pack.weights.fileio import Buffer, SequentialHash, advise_sequential, pread_exact
from mindie_pack.weights.hf_source import HFWeights


@dataclass
class CheckResult:
    name: str
    ok: bool
    detail: str


@dataclass
class VerifyReport:
    model_dir: Path
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(CheckResult(name, ok, detail))
        return ok

    def as_dict(self) -> dict[str, Any]:
        return {"model_dir": str(self.model_dir), "ok": self.ok,
                "checks": [{"name": c.name, "ok": c.ok, "detail": c.detail} for c in self.checks]}


def check_manifest(model_dir: Path, report: VerifyReport, *,
                   deferred: frozenset[str] = frozenset()) -> dict[str, tuple[str, str]]:
    """Sizes and hashes of every listed file, except those in `deferred` (relative paths) whose hashes the
    caller takes while reading them anyway; returns the manifest's (algorithm, digest) of every output."""
    manifest = read_manifest(model_dir)
    listed = {entry["path"]: entry for entry in manifest["outputs"]}
    hashes: dict[str, tuple[str, str]] = {}
    for rel, entry in listed.items():
        known = record_hash(entry)
        if known is None:
            report.add("manifest", False, f"{rel}: {MANIFEST_NAME} gives no hash for it (expected one of "
                       f"{', '.join(ALGORITHMS)})")
            return hashes
        hashes[rel] = known
    for rel, entry in listed.items():
        path = model_dir / rel
        if not path.is_file():
            report.add("manifest", False, f"{rel}: listed in {MANIFEST_NAME} but missing")
            return hashes
        if path.stat().st_size != entry["size"]:
            report.add("manifest", False, f"{rel}: size {path.stat().st_size}, manifest says {entry['size']}")
            return hashes
        algorithm, digest = hashes[rel]
        if rel not in deferred and hash_file(path, algorithm) != digest:
            report.add("manifest", False, f"{rel}: {algorithm} differs from {MANIFEST_NAME} (file changed or corrupt)")
            return hashes
    extra = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*")
                   if p.is_file() and p.name != MANIFEST_NAME and str(p.relative_to(model_dir)) not in listed)
    if extra:
        report.add("manifest", False, f"{extra[0]}: not listed in {MANIFEST_NAME} ({len(extra)} unlisted file(s))")
        return hashes
    later = f" ({len(deferred)} weight file(s) hashed during the reference comparison)" if deferred else ""
    report.add("manifest", True, f"{len(listed)} files match their size" + (later or " and hash"))
    return hashes


def check_rank_layout(built: BuiltModelDir, report: VerifyReport) -> list[RankIndex] | None:
    """Rank folders, one .ckpt each, and every record (read by our own streaming reader, headers only)
    named, shaped and typed as the yaml's network declares."""
    weights = built.weights_dir
    ranks = sorted(p.name for p in weights.iterdir() if p.is_dir()) if weights.is_dir() else []
    expected = [f"rank_{r}" for r in range(built.tp)]
    if sorted(ranks) != sorted(expected):
        report.add("layout", False, f"{weights}: rank folders {ranks}, expected {expected} "
                   f"(model_parallel={built.tp} in {built.yaml_path.name})")
        return None
    for rank in range(built.tp):
        ckpts = list((weights / f"rank_{rank}").glob("*.ckpt"))
        if [p.name for p in ckpts] != [rank_file_path(weights, rank).name]:
            report.add("layout", False, f"{weights / f'rank_{rank}'}: expected exactly "
                       f"checkpoint_{rank}.ckpt, found {sorted(p.name for p in ckpts)}")
            return None
    try:
        indexes = rank_indexes(built)
    except PackError as exc:
        report.add("layout", False, str(exc))
        return None
    planned = {spec.target: spec for spec in built.specs}
    for rank, index in enumerate(indexes):
        path = rank_file_path(weights, rank)
        missing, unexpected = sorted(set(planned) - set(index)), sorted(set(index) - set(planned))
        if missing or unexpected:
            what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
            report.add("layout", False, f"{path}: {what} ({len(missing)} missing, {len(unexpected)} unexpected)")
            return None
        for name, spec in planned.items():
            record, want = index[name], spec.rank_shape(built.tp)
            if record.dims != want:
                report.add("layout", False, f"{path}: tensor {name!r} has shape {list(record.dims)}, expected "
                           f"{list(want)} from {built.yaml_path.name}")
                return None
            if record.type_str != spec.dtype.info.mindspore:
                report.add("layout", False, f"{path}: tensor {name!r} is {record.type_str}, expected "
                           f"{spec.dtype.info.mindspore}")
                return None
    report.add("layout", True, f"{built.tp} rank folder(s), one .ckpt each; all {len(planned)} tensors per rank "
               "named, shaped and typed as planned")
    return indexes


SAMPLE_BYTES = 16 * 1024 * 1024  # per rank, default path (beyond the smallest tensor of each dtype)
BATCH_BYTES = 256 * 1024 * 1024  # per MindSpore call with --mindspore


def _sample(records: list[CkptRecord], budget: int) -> list[CkptRecord]:
    """The smallest record of each dtype, then the smallest others, within `budget` bytes (at least one)."""
    by_size = sorted(records, key=lambda r: r.span[1] - r.span[0])
    chosen: dict[str, CkptRecord] = {}
    for record in by_size:
        chosen.setdefault(record.type_str, record)
    total = sum(r.span[1] - r.span[0] for r in chosen.values())
    for record in by_size:
        size = record.span[1] - record.span[0]
        if record.name not in {r.name for r in chosen.values()} and total + size <= budget:
            chosen[record.name] = record
            total += size
    return sorted(chosen.values(), key=lambda r: r.span[0])


def _batches(records: list[CkptRecord], limit: int) -> list[list[CkptRecord]]:
    batches: list[list[CkptRecord]] = [[]]
    size = 0
    for record in records:
        length = record.span[1] - record.span[0]
        if batches[-1] and size + length > limit:
            batches.append([])
            size = 0
        batches[-1].append(record)
        size += length
    return batches


def check_mindspore_load(built: BuiltModelDir, indexes: list[RankIndex], report: VerifyReport, *,
                         full: bool = False) -> None:
    """MindSpore itself parses our records: by default a sample of every rank (the smallest tensor of each
    dtype and more up to 64 MiB), with `full` every record. The records' exact bytes are copied into small
    temporary .ckpt files (a checkpoint is a run of records), so `mindspore.load_checkpoint` never sees a
    file larger than 256 MiB: its memory stays flat, and its refusal of files larger than *free* memory
    (page cache not counted) cannot fail a correct model. Values must equal what our reader reads."""
    import mindspore

    loaded = 0
    with tempfile.TemporaryDirectory(prefix="mindie-pack-verify-") as tmp:
        for rank, index in enumerate(indexes):
            path = rank_file_path(built.weights_dir, rank)
            records = list(index.values())
            chosen = _batches(records, BATCH_BYTES) if full else [_sample(records, SAMPLE_BYTES)]
            for batch in chosen:
                part = Path(tmp) / f"rank{rank}.ckpt"
                with path.open("rb") as src, part.open("wb") as dst:
                    for record in batch:
                        src.seek(record.span[0])
                        remaining = record.span[1] - record.span[0]
                        while remaining:
                            data = src.read(min(remaining, 8 * 1024 * 1024))
                            dst.write(data)
                            remaining -= len(data)
                try:
                    params = mindspore.load_checkpoint(str(part))
                except Exception as exc:  # MindSpore raises ValueError/RuntimeError with long texts
                    report.add("mindspore", False, f"{path}: mindspore.load_checkpoint failed on tensors "
                               f"{batch[0].name!r}..: {str(exc).splitlines()[0]}")
                    return
                for record in batch:
                    param = params.get(record.name)
                    if param is None or tuple(param.shape) != record.dims:
                        report.add("mindspore", False, f"{path}: MindSpore reads tensor {record.name!r} as "
                                   f"{None if param is None else list(param.shape)}, expected {list(record.dims)}")
                        return
                    if str(param.dtype) != record.dtype.info.mindspore:
                        report.add("mindspore", False, f"{path}: MindSpore reads tensor {record.name!r} as "
                                   f"{param.dtype}, the record says {record.type_str}")
                        return
                    ours = to_float32(read_record(path, record))
                    theirs = param.float().asnumpy() if param.dtype == mindspore.bfloat16 else param.asnumpy()
                    if not np.array_equal(ours, theirs.astype(np.float32), equal_nan=True):
                        report.add("mindspore", False, f"{path}: tensor {record.name!r}: MindSpore reads other "
                                   "values than our reader")
                        return
                loaded += len(batch)
                del params
                part.unlink()
    total = sum(len(index) for index in indexes)
    scope = "every tensor" if full else f"a sample of {loaded} of {total} tensors"
    report.add("mindspore", True, f"mindspore.load_checkpoint reads {scope} of {built.tp} rank(s) with the "
               "values our reader reads")


class _RankStream:
    """Reads one rank file's records in file order and hashes the whole file on the way."""

    def __init__(self, path: Path, buffer: Buffer, algorithm: str) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        advise_sequential(self.fd)
        self._buffer = buffer
        self.algorithm = algorithm
        self.hash = SequentialHash(self.fd, algorithm)
        self._record: CkptRecord | None = None
        self._piece = self._offset = 0

    def start(self, record: CkptRecord) -> None:
        self._record, self._piece, self._offset = record, 0, 0

    def read(self, count: int) -> memoryview:
        assert self._record is not None
        view = self._buffer.view(count)
        done = 0
        while done < count:
            if self._piece >= len(self._record.pieces):
                raise PackError(f"{self.path}: tensor {self._record.name!r} holds fewer bytes than expected")
            offset, length = self._record.pieces[self._piece]
            take = min(count - done, length - self._offset)
            chunk = view[done:done + take]
            pread_exact(self.fd, chunk, offset + self._offset)
            job = self.hash.job_for(offset + self._offset, chunk)
            if job is not None:
                job()
            done += take
            self._offset += take
            if self._offset == length:
                self._piece, self._offset = self._piece + 1, 0
        return view

    def finished_record(self) -> bool:
        assert self._record is not None
        return self._piece == len(self._record.pieces) or (
            self._piece == len(self._record.pieces) - 1 and self._record.pieces[-1][1] == self._offset)

    def close(self) -> None:
        os.close(self.fd)


def check_against_reference(built: BuiltModelDir, indexes: list[RankIndex], reference: Path,
                            report: VerifyReport, *, manifest_hashes: dict[str, tuple[str, str]], clamp: bool = False,
                            progress: Callable[[int], None] | None = None) -> None:
    """Every stored tensor of every rank against the independent oracle (builder/oracle.py), streaming:
    a block of rows at a time, so memory does not depend on the model size. The rank files are hashed in
    the same pass and held against the manifest."""
    try:
        ref = Reference(reference)
    except PackError as exc:
        report.add("reference", False, str(exc))
        return
    buffer = Buffer()
    streams = []
    for rank in range(built.tp):
        path = rank_file_path(built.weights_dir, rank)
        algorithm, _ = manifest_hashes.get(str(path.relative_to(built.path)), (OUTPUT_HASH, ""))
        streams.append(_RankStream(path, buffer, algorithm))
    tp = built.tp
    try:
        for name, first in indexes[0].items():
            try:
                expected = expected_for(name, ref)
            except PackError as exc:
                report.add("reference", False, str(exc))
                return
            records = [index[name] for index in indexes]
            source_shape = ref.shape(expected.source)
            rows = source_shape[0] if source_shape else 1
            chunk = -(-rows // expected.parts)  # torch.chunk's chunk size
            lo, hi = expected.part * chunk, min(rows, (expected.part + 1) * chunk)
            full = (hi - lo, *source_shape[1:]) if source_shape else ()
            split = expected.split_dim
            if expected.vocab and first.dims and first.dims[0] == hi - lo:
                split = None
            want = list(full)
            if split is not None and tp > 1:
                want[split] //= tp
            if list(first.dims) != want:
                report.add("reference", False, f"tensor {name!r} has shape {list(first.dims)} on each rank; "
                           f"{expected.source!r} of {reference} {list(source_shape)} split {tp} way(s) on "
                           f"dim {split} gives {want}")
                return
            per_rank = (hi - lo) // tp if split == 0 else hi - lo
            row_bytes = math.prod(source_shape[1:]) * 4 if source_shape else 4
            for stream, record in zip(streams, records, strict=True):
                stream.start(record)
            for a, b in row_blocks(lo, hi, row_bytes, STEP_BYTES):
                block = torch_cast(ref.rows(expected.source, a, b), first.type_str, clamp=clamp)
                for rank, stream in enumerate(streams):
                    if split == 0 and tp > 1:
                        r0, r1 = max(a, lo + rank * per_rank), min(b, lo + (rank + 1) * per_rank)
                        if r1 <= r0:
                            continue
                        part = block[r0 - a:r1 - a]
                    else:
                        part = rank_part(block, split, tp, rank)
                    want_bytes = raw_bytes(part)
                    got = stream.read(len(want_bytes))
                    if got.tobytes() != want_bytes.tobytes():  # two memcpy and a memcmp: fast and exact
                        report.add("reference", False, f"{stream.path}: tensor {name!r} (rows {a}..{b - 1} of "
                                   f"{expected.source!r}) differs from {reference} cast to {first.type_str} by "
                                   "torch")
                        return
            for stream in streams:
                if not stream.finished_record():
                    report.add("reference", False, f"{stream.path}: tensor {name!r} holds more bytes than "
                               f"{expected.source!r} of {reference}")
                    return
            if progress:
                progress(1)
        for stream in streams:
            rel = str(stream.path.relative_to(built.path))
            if (stream.algorithm, stream.hash.hexdigest()) != manifest_hashes.get(rel):
                report.add("manifest", False, f"{rel}: {stream.algorithm} differs from {MANIFEST_NAME} (file changed "
                           "or corrupt)")
                return
    finally:
        for stream in streams:
            stream.close()
    report.add("reference", True, f"all {len(indexes[0])} tensors of {tp} rank(s) equal {reference} read by the "
               "safetensors library, cast by torch and split by torch.chunk, bit for bit")


def check_safetensors_reference(weights_dir: Path, reference: Path, report: VerifyReport, *,
                                clamp: bool = False) -> None:
    """mf-safetensors and atb/torch: what MindIE reads (our directory, through its index, by our reader)
    against the reference read by the safetensors library and cast by torch to the stored dtype, a block
    at a time; hard-linked files are named as such (then the comparison also proves the links)."""
    ours = HFWeights(weights_dir)
    ref = Reference(reference)
    if set(ours.entries) != set(ref.files):
        report.add("reference", False, f"{weights_dir}: tensor names differ from {reference}")
        return
    linked = 0
    for name, entry in ours.entries.items():
        source = ref.files[name]
        if entry.file.stat().st_ino == source.stat().st_ino and entry.file.stat().st_dev == source.stat().st_dev:
            linked += 1
        rows = entry.shape[0] if entry.shape else 1
        row_bytes = entry.nbytes // max(1, rows)
        if tuple(ref.shape(name)) != entry.shape:
            report.add("reference", False, f"tensor {name!r}: shape {list(entry.shape)}, reference "
                       f"{list(ref.shape(name))}")
            return
        for a, b in row_blocks(0, rows, row_bytes, STEP_BYTES):
            mine = ours.read_rows(name, a, b) if entry.shape else ours.read(name).array
            theirs = ref.rows(name, a, b)
            if entry.dtype.is_float:
                theirs = torch_cast(theirs, entry.dtype.info.mindspore, clamp=clamp)
            if np.ascontiguousarray(mine).tobytes() != raw_bytes(theirs).tobytes():
                report.add("reference", False, f"{entry.file}: tensor {name!r} (rows {a}..{b - 1}) differs from "
                           f"{reference} (cast to {entry.dtype.info.name} by torch)")
                return
    how = f" ({linked} of them in files hard-linked to the reference)" if linked else ""
    report.add("reference", True, f"all {len(ours.entries)} safetensors tensors, as MindIE reads them, equal "
               f"{reference} read by the safetensors library{how}")


def verify_model_dir(model_dir: Path, reference: Path | None = None,
                     progress: Callable[[int], None] | None = None, *, mindspore_full: bool = False) -> VerifyReport:
    """Constant memory whatever the model size: every file is hashed, every rank parsed by our streaming
    reader, MindSpore reads a sample (every tensor with `mindspore_full`), and with `reference` every tensor
    is compared with the independent oracle in the same pass that hashes the rank files."""
    report = VerifyReport(model_dir)
    from mindie_pack.builder.hf_profile import is_hf_layout, verify_hf_dir

    if is_hf_layout(model_dir):  # atb / torch profiles: the HF folder, no yaml, no ranks
        return verify_hf_dir(model_dir, reference, report)
    clamp = bool(read_manifest(model_dir).get("options", {}).get("clamp", False))
    built = open_model_dir(model_dir)
    converted = built.profile != "mf-safetensors"
    deferred = frozenset(str(rank_file_path(built.weights_dir, r).relative_to(model_dir)) for r in range(built.tp)) \
        if converted and reference is not None else frozenset()
    hashes = check_manifest(model_dir, report, deferred=deferred)
    report.add("yaml", True, f"{built.yaml_path.name}: {built.model.family.name}, profile {built.profile}, "
               f"model_parallel {built.tp}, {built.dtype.info.name}")
    if not converted:
        if reference is not None:
            check_safetensors_reference(built.weights_dir, reference, report)
        return report
    indexes = check_rank_layout(built, report)
    if indexes is None:
        return report
    check_mindspore_load(built, indexes, report, full=mindspore_full)
    if reference is not None:
        check_against_reference(built, indexes, reference, report, manifest_hashes=hashes, clamp=clamp,
                                progress=progress)
    return report
