"""MindSpore itself reading our rank files (`verify`'s "mindspore" check), run in a child process.

Why a child process: importing MindSpore takes ~3.5 s of CPU on our CI machines, as long as importing torch
for the reference oracle. Started first, the child imports MindSpore and loads its sample while the parent
hashes the files and compares every tensor with the reference: on 2 cores the two imports overlap instead of
adding up (issue 13: verify within 1.5x the build's time). The child is ours: the parent kills it when it
stops early.

    python -m mindie_pack.builder.mindspore_check MODEL_DIR [--full]   # prints the check as one JSON line
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from mindie_pack.batching import consecutive_batches
from mindie_pack.builder.convert import rank_file_path
from mindie_pack.builder.model_dir import BuiltModelDir, open_model_dir
from mindie_pack.builder.oracle import row_blocks
from mindie_pack.builder.report import CheckResult, VerifyReport
from mindie_pack.builder.shards import RankIndex, rank_indexes
from mindie_pack.errors import PackError
from mindie_pack.process_exit import leave
from mindie_pack.weights.ckpt_format import CkptRecord, read_record
from mindie_pack.weights.dtypes import RawTensor, to_float32

CHECK = "mindspore"

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


COMPARE_BYTES = 4 * 1024 * 1024  # float32 bytes per compared block


def _same_values(ours: RawTensor, param: Any, bfloat16: Any) -> bool:
    """Our reader's values equal MindSpore's, compared a block of rows at a time: whole-tensor float32 copies
    of both sides cost ~8x the tensor, and the sample's smallest bf16 tensor grows with the model (32 MiB at
    Llama-7B tp 1 made the check peak at 800 MiB)."""
    if not ours.array.ndim:
        blocks: Iterable[tuple[np.ndarray, Any]] = [(ours.array, param)]
    else:  # one block's slices at a time (a generator): a MindSpore slice is a new tensor
        row_bytes = math.prod(ours.array.shape[1:]) * 4
        blocks = ((ours.array[a:b], param[a:b]) for a, b in row_blocks(0, ours.array.shape[0], row_bytes,
                                                                          COMPARE_BYTES))
    for mine, theirs in blocks:
        values = theirs.float().asnumpy() if theirs.dtype == bfloat16 else theirs.asnumpy()
        if not np.array_equal(to_float32(RawTensor(ours.dtype, mine)), values.astype(np.float32, copy=False),
                              equal_nan=True):
            return False
        del values
    return True


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
            chosen = consecutive_batches(records, lambda r: r.span[1] - r.span[0], BATCH_BYTES) if full \
                else [_sample(records, SAMPLE_BYTES)]
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
                    report.add(CHECK, False, f"{path}: mindspore.load_checkpoint failed on tensors "
                               f"{batch[0].name!r}..: {str(exc).splitlines()[0]}")
                    return
                for record in batch:
                    param = params.get(record.name)
                    if param is None or tuple(param.shape) != record.dims:
                        report.add(CHECK, False, f"{path}: MindSpore reads tensor {record.name!r} as "
                                   f"{None if param is None else list(param.shape)}, expected {list(record.dims)}")
                        return
                    if str(param.dtype) != record.dtype.info.mindspore:
                        report.add(CHECK, False, f"{path}: MindSpore reads tensor {record.name!r} as "
                                   f"{param.dtype}, the record says {record.type_str}")
                        return
                    if not _same_values(read_record(path, record), param, mindspore.bfloat16):
                        report.add(CHECK, False, f"{path}: tensor {record.name!r}: MindSpore reads other "
                                   "values than our reader")
                        return
                loaded += len(batch)
                del params
                part.unlink()
    total = sum(len(index) for index in indexes)
    scope = "every tensor" if full else f"a sample of {loaded} of {total} tensors"
    report.add(CHECK, True, f"mindspore.load_checkpoint reads {scope} of {built.tp} rank(s) with the "
               "values our reader reads")


class MindSporeCheck:
    """check_mindspore_load on `model_dir` in a child process, started at once; `result()` waits for it."""

    def __init__(self, model_dir: Path, *, full: bool = False) -> None:
        package_root = str(Path(__file__).resolve().parents[2])
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
        self._proc = subprocess.Popen(
            [sys.executable, "-m", __name__, str(model_dir), *(["--full"] if full else [])],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True, env=env)

    def result(self) -> CheckResult:
        out, err = self._proc.communicate()
        for line in reversed(out.splitlines()):
            try:
                found = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(found, dict) and found.get("name") == CHECK:
                return CheckResult(CHECK, bool(found.get("ok")), str(found.get("detail")))
        last = next((line for line in reversed(err.splitlines()) if line.strip()), "no output")
        return CheckResult(CHECK, False, f"the MindSpore check exited with code {self._proc.returncode}: {last}")

    def cancel(self) -> None:
        if self._proc.poll() is None:
            self._proc.kill()  # our own child, nobody else's
        self._proc.communicate()

    def __enter__(self) -> MindSporeCheck:
        return self

    def __exit__(self, *exc: object) -> None:
        self.cancel()


def main(argv: list[str]) -> int:
    model_dir, full = Path(argv[0]), "--full" in argv[1:]
    report = VerifyReport(model_dir)
    try:
        built = open_model_dir(model_dir)
        check_mindspore_load(built, rank_indexes(built), report, full=full)
    except PackError as exc:  # the parent's layout check names the same problem
        report.add(CHECK, False, str(exc))
    check = report.checks[-1]
    print(json.dumps({"name": check.name, "ok": check.ok, "detail": check.detail}), flush=True)
    return 0


if __name__ == "__main__":
    code = main(sys.argv[1:])
    leave(code)  # the verifier waits for this process: MindSpore's teardown would add ~0.6 s to every verify
    sys.exit(code)
