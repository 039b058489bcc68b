"""Known fatal daemon log lines -> the likely cause and the fix (reference mindie-service.md §7)."""

from __future__ import annotations

import re

HINTS: list[tuple[re.Pattern[str], str]] = [(re.compile(p, re.IGNORECASE), h) for p, h in [
    (r"listen port is occupied|Socket bind failed|Failed to listen",
     "a port is in use (a stale daemon?): check with `ss -ltnp`, stop it, or deploy with --port"),
    (r"owner id diff|permission|is a link|Check_?path", "file owner/permissions: chown the files to the daemon user, "
     "chmod 640 config.json, chmod 750 the model directory"),
    (r"There is no yaml file|no valid checkpoint files|modelWeightPath .* does not exist|FileNotFoundError",
     "the model directory is incomplete: rebuild it with `mindie-pack build` and point modelWeightPath at it"),
    (r"out of memory|OOM|Failed to allocate", "out of NPU memory: lower npuMemSize, use more cards (--tp), or a "
     "smaller dtype"),
    (r"npu_mem_size=-1 only support", "set npuMemSize to a positive size in GB (e.g. 8) for the ms backend"),
    (r"missing torch_npu", "the daemon fell back to ATB: export MINDIE_LLM_FRAMEWORK_BACKEND=MS"),
    (r"MS_SCHED_PORT|scheduler", "the MindSpore scheduler port is taken: deploy again (a free MS_SCHED_PORT is "
     "chosen) or stop the other job"),
    (r"futex facility returned an unexpected error", "/dev/shm is too small: give the container --shm-size=1g or "
     "more"),
    (r"error while loading shared libraries", "the Ascend set_env.sh scripts were not sourced: check `mindie-pack "
     "env` and `mindie-pack doctor`"),
    (r"Failed to init engine|LLMInferEngine failed", "the model failed to load: read the lines above and "
     "~/mindie/log/debug (2.x) or mindie-service/logs (1.x)"),
    (r"\[ERROR\]|Failed to init endpoint", "the daemon refused its config: run `mindie-pack config validate` on it"),
]]


def hints_for(lines: list[str]) -> list[str]:
    found: list[str] = []
    for line in lines:
        for pattern, hint in HINTS:
            if pattern.search(line) and hint not in found:
                found.append(hint)
    return found
