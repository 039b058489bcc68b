"""`mindie-pack verify`: prove a model directory is what its manifest says and what MindSpore will load."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mindie_pack.builder.convert import rank_file_path
from mindie_pack.builder.manifest import MANIFEST_NAME, read_manifest, sha256_file
from mindie_pack.builder.model_dir import BuiltModelDir, open_model_dir
from mindie_pack.builder.shards import merged_tensor, rank_indexes
from mindie_pack.errors import PackError
from mindie_pack.weights.dtypes import RawTensor, cast
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


def check_manifest(model_dir: Path, report: VerifyReport) -> None:
    manifest = read_manifest(model_dir)
    listed = {entry["path"]: entry for entry in manifest["outputs"]}
    for rel, entry in listed.items():
        path = model_dir / rel
        if not path.is_file():
            report.add("manifest", False, f"{rel}: listed in {MANIFEST_NAME} but missing")
            return
        if path.stat().st_size != entry["size"]:
            report.add("manifest", False, f"{rel}: size {path.stat().st_size}, manifest says {entry['size']}")
            return
        if sha256_file(path) != entry["sha256"]:
            report.add("manifest", False, f"{rel}: sha256 differs from {MANIFEST_NAME} (file changed or corrupt)")
            return
    extra = sorted(str(p.relative_to(model_dir)) for p in model_dir.rglob("*")
                   if p.is_file() and p.name != MANIFEST_NAME and str(p.relative_to(model_dir)) not in listed)
    if extra:
        report.add("manifest", False, f"{extra[0]}: not listed in {MANIFEST_NAME} ({len(extra)} unlisted file(s))")
        return
    report.add("manifest", True, f"{len(listed)} files match their sha256")


def check_rank_layout(built: BuiltModelDir, report: VerifyReport) -> bool:
    weights = built.weights_dir
    ranks = sorted(p.name for p in weights.iterdir() if p.is_dir()) if weights.is_dir() else []
    expected = [f"rank_{r}" for r in range(built.tp)]
    if sorted(ranks) != sorted(expected):
        return report.add("layout", False, f"{weights}: rank folders {ranks}, expected {expected} "
                          f"(model_parallel={built.tp} in {built.yaml_path.name})")
    for rank in range(built.tp):
        ckpts = list((weights / f"rank_{rank}").glob("*.ckpt"))
        if [p.name for p in ckpts] != [rank_file_path(weights, rank).name]:
            return report.add("layout", False, f"{weights / f'rank_{rank}'}: expected exactly "
                              f"checkpoint_{rank}.ckpt, found {sorted(p.name for p in ckpts)}")
    return report.add("layout", True, f"{built.tp} rank folder(s), one .ckpt each")


def check_mindspore_load(built: BuiltModelDir, report: VerifyReport) -> None:
    """Load every rank with MindSpore itself and hold names, shapes and dtypes against the plan."""
    import mindspore

    for rank in range(built.tp):
        path = rank_file_path(built.weights_dir, rank)
        try:
            params = mindspore.load_checkpoint(str(path))
        except Exception as exc:  # MindSpore raises ValueError/RuntimeError with long texts
            report.add("mindspore", False, f"{path}: mindspore.load_checkpoint failed: {str(exc).splitlines()[0]}")
            return
        expected = {spec.target: spec for spec in built.specs}
        missing = sorted(set(expected) - set(params))
        unexpected = sorted(set(params) - set(expected))
        if missing or unexpected:
            what = f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}"
            report.add("mindspore", False, f"{path}: {what} ({len(missing)} missing, {len(unexpected)} unexpected)")
            return
        for name, spec in expected.items():
            param = params[name]
            want_shape = spec.rank_shape(built.tp)
            if tuple(param.shape) != want_shape:
                report.add("mindspore", False, f"{path}: tensor {name!r} has shape {list(param.shape)}, "
                           f"expected {list(want_shape)} from {built.yaml_path.name}")
                return
            want_dtype = getattr(mindspore, spec.dtype.info.name)
            if param.dtype != want_dtype:
                report.add("mindspore", False, f"{path}: tensor {name!r} is {param.dtype}, expected {want_dtype}")
                return
        del params
    report.add("mindspore", True, f"mindspore.load_checkpoint reads all {built.tp} rank(s): "
               f"{len(built.specs)} tensors, names/shapes/dtypes as planned")


def check_against_reference(built: BuiltModelDir, reference: Path, report: VerifyReport,
                            progress: Callable[[int], None] | None = None) -> None:
    source = HFWeights(reference)
    try:
        indexes = rank_indexes(built)
    except PackError as exc:
        report.add("reference", False, str(exc))
        return
    for spec in built.specs:
        if spec.source not in source:
            report.add("reference", False, f"{reference}: tensor {spec.source!r} missing from the reference")
            return
        expected = source.read(spec.source)
        if spec.source_rows is not None:
            expected = RawTensor(expected.dtype, expected.array[spec.source_rows[0]:spec.source_rows[1]])
        expected = cast(expected, spec.dtype)
        try:
            actual = merged_tensor(built, indexes, spec)
        except PackError as exc:
            report.add("reference", False, str(exc))
            return
        if actual.shape != expected.shape or actual.array.tobytes() != np.ascontiguousarray(expected.array).tobytes():
            report.add("reference", False, f"tensor {spec.target!r}: merged shards differ from {spec.source!r} "
                       f"of {reference} (shape {list(actual.shape)} vs {list(expected.shape)})")
            return
        if progress:
            progress(1)
    report.add("reference", True, f"all {len(built.specs)} tensors equal the reference bit for bit "
               f"(after the cast to the stored dtype)")


def check_safetensors_reference(built: BuiltModelDir, reference: Path, report: VerifyReport) -> None:
    ours, theirs = HFWeights(built.weights_dir), HFWeights(reference)
    if set(ours.entries) != set(theirs.entries):
        report.add("reference", False, f"{built.weights_dir}: tensor names differ from {reference}")
        return
    for name in ours.entries:
        if ours.read(name).array.tobytes() != theirs.read(name).array.tobytes():
            report.add("reference", False, f"tensor {name!r} differs from {reference}")
            return
    report.add("reference", True, f"all {len(ours.entries)} safetensors tensors equal the reference")


def verify_model_dir(model_dir: Path, reference: Path | None = None,
                     progress: Callable[[int], None] | None = None) -> VerifyReport:
    report = VerifyReport(model_dir)
    from mindie_pack.builder.hf_profile import is_hf_layout, verify_hf_dir

    if is_hf_layout(model_dir):  # atb / torch profiles: the HF folder, no yaml, no ranks
        return verify_hf_dir(model_dir, reference, report)
    check_manifest(model_dir, report)
    built = open_model_dir(model_dir)
    report.add("yaml", True, f"{built.yaml_path.name}: {built.model.family.name}, profile {built.profile}, "
               f"model_parallel {built.tp}, {built.dtype.info.name}")
    if built.profile == "mf-safetensors":
        if reference is not None:
            check_safetensors_reference(built, reference, report)
        return report
    if not check_rank_layout(built, report):
        return report
    check_mindspore_load(built, report)
    if reference is not None:
        check_against_reference(built, reference, report, progress)
    return report
