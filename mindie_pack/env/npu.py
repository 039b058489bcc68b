"""`npu-smi info` parsing: chips with health and HBM usage, and the processes holding NPU memory."""

from __future__ import annotations

import re
import subprocess
from dataclasses import asdict, dataclass, field

from mindie_pack.errors import PackError


@dataclass
class Chip:
    npu: int
    name: str
    health: str
    hbm_used_mb: int | None = None
    hbm_total_mb: int | None = None


@dataclass
class NpuProcess:
    npu: int
    pid: int
    name: str
    memory_mb: int


@dataclass
class NpuReport:
    chips: list[Chip] = field(default_factory=list)
    processes: list[NpuProcess] = field(default_factory=list)

    def to_dict(self) -> dict[str, object]:
        return {"chips": [asdict(c) for c in self.chips], "processes": [asdict(p) for p in self.processes]}


_USAGE = re.compile(r"(\d+)\s*/\s*(\d+)")


def parse_npu_smi_info(text: str) -> NpuReport:
    report = NpuReport()
    in_processes = False
    pending: Chip | None = None
    for line in text.splitlines():
        if not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0].startswith("NPU") and len(cells) > 1 and cells[1].startswith("Process id"):
            in_processes = True
            continue
        if in_processes:
            if len(cells) >= 4 and cells[1].isdigit():
                report.processes.append(NpuProcess(int(cells[0].split()[0]), int(cells[1]), cells[2],
                                                   int(cells[3].split()[0]) if cells[3].split() else 0))
            continue
        if len(cells) < 3 or not cells[0] or not cells[0].split()[0].isdigit():
            continue
        first = cells[0].split()
        if len(first) >= 2 and pending is None:  # "0     910B3" | health | power...
            pending = Chip(int(first[0]), first[1], cells[1])
            report.chips.append(pending)
        elif pending is not None:  # "0" | bus id | aicore  memory  hbm
            usages = _USAGE.findall(cells[2])
            if len(usages) >= 2:  # 310P has no HBM column: then there is one usage only
                pending.hbm_used_mb, pending.hbm_total_mb = int(usages[-1][0]), int(usages[-1][1])
            pending = None
    return report


def query_npus(npu_smi: str) -> NpuReport:
    try:
        proc = subprocess.run([npu_smi, "info"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise PackError(f"{npu_smi} info failed: {exc}") from exc
    if proc.returncode != 0:
        raise PackError(f"{npu_smi} info exited with {proc.returncode}: {proc.stderr.strip()[:200]}")
    return parse_npu_smi_info(proc.stdout)
