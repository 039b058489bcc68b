"""Benchmark: merging a MindFormers training output (4 ranks, tensor parallel, with optimizer state) back into a
complete model — `mindie-pack export` (per tensor, MindSpore's layout code, training state dropped first) vs
`mindspore.transform_checkpoints` with no destination strategy (the runbook's merge: loads every rank file whole
and writes one complete checkpoint, optimizer state included).

The training output is generated on the fly (no download): a Llama-shaped float32 model in MindFormers names plus
adam_m/adam_v moments, split into rank files by mindspore.transform_checkpoints with a strategy written with
MindSpore's strategy protobuf (tests/ingest_helpers.py). Each contender runs in its own subprocess; wall time and
that process's peak RSS (os.wait4 rusage) are printed side by side.

    python benchmarks/ingest.py [--workdir DIR] [--layers N] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def run(code: str, env: dict[str, str]) -> tuple[float, int]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step failed with exit code {proc.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", type=Path, default=None)
    parser.add_argument("--layers", type=int, default=6)
    parser.add_argument("--keep", action="store_true", help="keep the work folder (a later run reuses its input)")
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="mindie-pack-ingest-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests"),
                                                        os.environ.get("PYTHONPATH", "")]),
           "GLOG_v": "3"}
    try:
        for leftover in ("ours", "theirs"):  # from a --keep run, whose generated input is reused
            shutil.rmtree(work / leftover, ignore_errors=True)
        (work / "merged.ckpt").unlink(missing_ok=True)
        setup_s = 0.0
        if not (work / "output" / "strategy").is_dir():
            setup_s, _ = run(f"""
            from pathlib import Path
            import numpy as np, mindspore as ms
            from mindie_pack.tiny_model import TinyModelSpec, make_tiny_model
            from mindie_pack.builder.assemble import build_model_dir
            from mindie_pack.builder.options import BuildOptions
            from ingest_helpers import write_training_output
            work = Path({str(work)!r})
            spec = TinyModelSpec(family="llama", hidden_size=1024, num_layers={args.layers}, num_heads=16,
                                 num_kv_heads=8, intermediate_size=2816, vocab_size=32000, dtype="float32")
            hf = make_tiny_model(work / "hf", spec)
            build_model_dir(BuildOptions(model_dir=hf, output_dir=work / "full-build", tp=1))
            params = ms.load_checkpoint(str(work / "full-build/weights/rank_0/checkpoint_0.ckpt"))
            items = [{{"name": n, "data": p}} for n, p in params.items()]
            for prefix in ("adam_m", "adam_v"):
                items += [{{"name": f"{{prefix}}.{{n}}", "data": ms.Tensor(np.zeros(p.shape, np.float32))}}
                          for n, p in params.items()]
            full = work / "full" / "rank_0" / "full.ckpt"
            full.parent.mkdir(parents=True)
            ms.save_checkpoint(items, str(full), append_dict={{"epoch_num": 1, "step_num": 10}})
            del items, params
            write_training_output(full, work / "output", dp=1, mp=4)
        """, env)
        rank_bytes = sum(f.stat().st_size for f in (work / "output" / "checkpoint").rglob("*.ckpt"))
        hf_bytes = (work / "hf" / "model.safetensors").stat().st_size
        ours_s, ours_rss = run(f"""
            from pathlib import Path
            from mindie_pack.builder.inputs import InputOptions
            from mindie_pack.export.hf import export_hf
            work = Path({str(work)!r})
            export_hf(work / "output", work / "ours", inputs=InputOptions(work / "output", hf_config=work / "hf"))
        """, env)
        theirs_s, theirs_rss = run(f"""
            from pathlib import Path
            import mindspore as ms
            work = Path({str(work)!r})
            ms.parallel.merge_pipeline_strategys(str(work / "output" / "strategy"), str(work / "merged.ckpt"))
            ms.transform_checkpoints(str(work / "output" / "checkpoint"), str(work / "theirs"), "full_",
                                     str(work / "merged.ckpt"), None)
        """, env)
        baseline_s, baseline_rss = run("import mindspore, mindie_pack.export.hf", env)
        report = {
            "model_bytes": hf_bytes, "rank_files_bytes": rank_bytes, "setup_s": round(setup_s, 1),
            "python+mindspore import": {"s": round(baseline_s, 1), "peak_rss_mb": baseline_rss >> 20},
            "mindie-pack export (per tensor)": {"s": round(ours_s, 1), "peak_rss_mb": ours_rss >> 20},
            "mindspore.transform_checkpoints": {"s": round(theirs_s, 1), "peak_rss_mb": theirs_rss >> 20},
        }
        print(json.dumps(report, indent=2))
        print(f"model {hf_bytes / 2**20:.0f} MiB, rank files {rank_bytes / 2**20:.0f} MiB: peak RSS above the "
              f"import baseline: ours {(ours_rss - baseline_rss) / 2**20:.0f} MiB, transform_checkpoints "
              f"{(theirs_rss - baseline_rss) / 2**20:.0f} MiB")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
