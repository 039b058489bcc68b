"""`mindie-pack verify`: prove a model directory is what its manifest says and what MindSpore will load."""

from __future__ import annotations

import ctypes
import math
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import numpy as np

from mindie_pack.builder.convert import STEP_BYTES, rank_file_path
from mindie_pack.builder.manifest import MANIFEST_NAME, read_manifest
from mindie_pack.builder.mindspore_check import MindSporeCheck
from mindie_pack.builder.model_dir import BuiltModelDir, open_model_dir
from mindie_pack.builder.oracle import Reference, expected_for, rank_part, raw_bytes, row_blocks, torch_cast
from mindie_pack.builder.report import VerifyReport
from mindie_pack.builder.shards import RankIndex, rank_indexes
from mindie_pack.errors import PackError
from mindie_pack.hashing import ALGORITHMS, OUTPUT_HASH, hash_file, record_hash
from mindie_pack.weights import libc
from mindie_pack.weights.ckpt_format import CkptRecord
from mindie_pack.weights.fileio import (
    Buffer,
    SequentialHash,
    TrailingJobs,
    advise_sequential,
    advise_willneed,
    map_range,
    pread_exact,
    prefetch_start,
)
from mindie_pack.weights.hf_source import HFWeights


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


# How far ahead of the comparison the rank files are read. `build` drops what it wrote from the page cache;
# started at once, the first PREFETCH_BYTES of each rank are read while torch and MindSpore are imported.
PREFETCH_BYTES = 512 * 1024 * 1024
# Hash jobs that may wait behind the comparison. Each holds the mapped view it hashes (≤ 32 MiB of file pages,
# counted in RSS while mapped): with the one running and the comparison's own, ~128 MiB at most.
HASH_LAG = 2


class _RankStream:
    """Reads one rank file's records in file order and hashes the whole file on the way: the hash jobs go to
    `jobs` (one thread for all ranks, trailing the comparison), hashing the mapped views the comparison reads."""

    def __init__(self, path: Path, buffer: Buffer, algorithm: str, jobs: TrailingJobs) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        advise_sequential(self.fd)
        self._buffer = buffer
        self._jobs = jobs
        self.algorithm = algorithm
        self.hash = SequentialHash(self.fd, algorithm)
        self._record: CkptRecord | None = None
        self._piece = self._offset = 0

    def start(self, record: CkptRecord) -> None:
        self._record, self._piece, self._offset = record, 0, 0

    def read(self, count: int) -> memoryview:
        """The record's next `count` bytes: a mapped view when they lie in one piece (no copy), else copied
        together into the shared buffer. The kernel is asked to read PREFETCH_BYTES ahead."""
        assert self._record is not None
        if self._piece < len(self._record.pieces):
            offset, length = self._record.pieces[self._piece]
            advise_willneed(self.fd, offset + self._offset + PREFETCH_BYTES, count)
            if count <= length - self._offset:
                start = offset + self._offset
                if start + count > self.hash.size:
                    raise PackError(f"{self.path}: truncated in tensor {self._record.name!r}")
                view = map_range(self.fd, start, count)
                self._jobs.submit(self.hash.job_for(start, count, view))
                self._offset += count
                if self._offset == length:
                    self._piece, self._offset = self._piece + 1, 0
                return view
        view = self._buffer.view(count)
        done = 0
        while done < count:
            if self._piece >= len(self._record.pieces):
                raise PackError(f"{self.path}: tensor {self._record.name!r} holds fewer bytes than expected")
            offset, length = self._record.pieces[self._piece]
            take = min(count - done, length - self._offset)
            chunk = view[done:done + take]
            pread_exact(self.fd, chunk, offset + self._offset)
            self._jobs.submit(self.hash.job_for(offset + self._offset, take))  # maps its range: the buffer is reused
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


def _same_bytes(a: memoryview, b: memoryview) -> bool:
    """Exact byte equality without copying either side: libc's memcmp on the two buffers (ctypes releases
    the GIL), numpy 8 bytes at a time where there is no libc to call."""
    if len(a) != len(b):
        return False
    if not len(a):
        return True
    x, y = np.frombuffer(a, np.uint8), np.frombuffer(b, np.uint8)
    if _MEMCMP is not None:
        return _MEMCMP(x.ctypes.data, y.ctypes.data, len(x)) == 0
    whole = len(x) - len(x) % 8
    return bool(np.array_equal(x[:whole].view(np.uint64), y[:whole].view(np.uint64))) and a[whole:] == b[whole:]


_MEMCMP = libc.function("memcmp", ctypes.c_int, [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t])


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
    hasher = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify-hash")  # xxhash releases the GIL
    jobs = TrailingJobs(hasher, HASH_LAG)
    streams: list[_RankStream] = []
    tp = built.tp
    try:
        for rank in range(tp):
            path = rank_file_path(built.weights_dir, rank)
            algorithm, _ = manifest_hashes.get(str(path.relative_to(built.path)), (OUTPUT_HASH, ""))
            streams.append(_RankStream(path, buffer, algorithm, jobs))
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
                    if not _same_bytes(got, want_bytes):
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
        jobs.drain()
        for stream in streams:
            rel = str(stream.path.relative_to(built.path))
            if (stream.algorithm, stream.hash.hexdigest()) != manifest_hashes.get(rel):
                report.add("manifest", False, f"{rel}: {stream.algorithm} differs from {MANIFEST_NAME} (file changed "
                           "or corrupt)")
                return
    finally:
        hasher.shutdown(wait=True, cancel_futures=True)  # before the files close: a running job reads one
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
            if not _same_bytes(memoryview(np.ascontiguousarray(mine).reshape(-1).view(np.uint8)), raw_bytes(theirs)):
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
    if converted and reference is not None:
        prefetch_start([rank_file_path(built.weights_dir, r) for r in range(built.tp)], PREFETCH_BYTES)
    with MindSporeCheck(model_dir, full=mindspore_full) if converted else nullcontext() as mindspore:
        return _verify_converted(built, report, reference, deferred, clamp, progress, mindspore)


def _verify_converted(built: BuiltModelDir, report: VerifyReport, reference: Path | None, deferred: frozenset[str],
                      clamp: bool, progress: Callable[[int], None] | None,
                      mindspore: MindSporeCheck | None) -> VerifyReport:
    hashes = check_manifest(built.path, report, deferred=deferred)
    report.add("yaml", True, f"{built.yaml_path.name}: {built.model.family.name}, profile {built.profile}, "
               f"model_parallel {built.tp}, {built.dtype.info.name}")
    if mindspore is None:  # mf-safetensors: MindIE reads the linked HF files
        if reference is not None:
            check_safetensors_reference(built.weights_dir, reference, report)
        return report
    indexes = check_rank_layout(built, report)
    if indexes is None:
        return report
    position = len(report.checks)  # MindSpore's result is reported here, when the child has finished
    if reference is not None:
        check_against_reference(built, indexes, reference, report, manifest_hashes=hashes, clamp=clamp,
                                progress=progress)
    report.checks.insert(position, mindspore.result())
    return report
