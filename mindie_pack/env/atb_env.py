"""The environment of the atb / torch backends: which set_env.sh scripts a release has, and the ATB/NPU variables
operators set, each with its default and why. Every default is overridable: a value already in the caller's
environment wins, and `--env KEY=VALUE` (or `env` in the spec) wins over both.

Sources: MindIE-LLM docs/zh/user_guide/user_manual/environment_variable.md (8b4871ad = 3.0.0, 40fb0630 = 2.3.0);
GPUStack's production set (gpustack/worker/backends/ascend_mindie.py, `_start`/`_get_serving_command_script`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from mindie_pack.env.environment import DaemonEnv, free_port, source_scripts
from mindie_pack.errors import PackError


@dataclass(frozen=True)
class Default:
    name: str
    value: str
    reason: str


ATB_DEFAULTS: tuple[Default, ...] = (
    Default("NPU_MEMORY_FRACTION", "0.8", "share of NPU memory for weights + KV cache + workspace; 0.8 is MindIE "
            "LLM's own default (environment_variable.md:70 @8b4871ad); lower it if start-up OOMs elsewhere, raise it "
            "for more KV blocks"),
    Default("OMP_NUM_THREADS", "1", "the tokenizer and host threads must not oversubscribe the CPU cores the NPU "
            "feeders need (GPUStack sets 1)"),
    Default("ATB_OPERATION_EXECUTE_ASYNC", "1", "two-stage pipeline of ATB graph launches, the documented default "
            "(environment_variable.md:17)"),
    Default("ATB_WORKSPACE_MEM_ALLOC_GLOBAL", "1", "global allocation of intermediate tensors, the documented "
            "default (environment_variable.md:135); nnal/atb/set_env.sh exports 0, so we restore it"),
    Default("ATB_LAYER_INTERNAL_TENSOR_REUSE", "1", "reuse of intermediate tensors inside a layer (GPUStack)"),
    Default("ATB_LLM_ENABLE_AUTO_TRANSPOSE", "1", "weight right-matrix auto-transpose tuning "
            "(environment_variable.md:85; GPUStack)"),
    Default("ATB_CONVERT_NCHW_TO_ND", "1", "ND format for matmuls (GPUStack)"),
    Default("ATB_WORKSPACE_MEM_ALLOC_ALG_TYPE", "3", "workspace allocator algorithm 3 (GPUStack)"),
    Default("MINDIE_LOG_TO_STDOUT", "1", "the log on stdout, where deploy reads readiness and failures "
            "(environment_variable.md:120; quick_start.md step 4)"),
)
DEFAULT_MASTER_PORT = 29500  # torch.distributed's customary port; taken only when free


def set_env_scripts_for(root: Path, mindie_version: str | None, mindie_service: Path | None) -> list[Path]:
    """The scripts a release has, in sourcing order. 3.0 has no mindie tree (pip package): CANN toolkit + NNAL/ATB
    only; atb_llm comes from the Python environment. <= 2.3: toolkit, nnal/atb, atb-models, then mindie's."""
    scripts = [root / "ascend-toolkit" / "set_env.sh", root / "nnal" / "atb" / "set_env.sh"]
    head = (mindie_version or "").split(".")[0]
    if head.isdigit() and int(head) >= 3:
        return scripts
    scripts.append(root / "atb-models" / "set_env.sh")
    if mindie_service is not None and (mindie_service.parent.parent / "set_env.sh").is_file():
        scripts.append(mindie_service.parent.parent / "set_env.sh")
    elif mindie_service is not None:
        scripts += [mindie_service.parent / "mindie-llm" / "set_env.sh", mindie_service / "set_env.sh"]
    return scripts


def parse_overrides(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key or not key.replace("_", "").isalnum():
            raise PackError(f"--env {pair!r}: expected NAME=VALUE, e.g. NPU_MEMORY_FRACTION=0.9")
        out[key] = value
    return out


def atb_environment(*, root: Path, mindie_version: str | None, mindie_service: Path | None = None,
                    devices: Sequence[int] | None = None, world_size: int = 1,
                    overrides: Mapping[str, str] | None = None, base_env: Mapping[str, str] | None = None,
                    extra_pythonpath: Sequence[Path] = ()) -> DaemonEnv:
    """Source the release's scripts (unfiltered: atb needs torch/torch_npu), then apply our defaults where the
    operator has not set the variable, then the explicit overrides."""
    base = dict(os.environ if base_env is None else base_env)
    scripts = set_env_scripts_for(root, mindie_version, mindie_service)
    present = [s for s in scripts if s.is_file()]
    missing = [str(s) for s in scripts if not s.is_file()]
    env = source_scripts(present, base, backend="atb") if present else dict(base)
    for default in ATB_DEFAULTS:
        if default.name not in base:  # the operator's own value wins (the scripts' do not)
            env[default.name] = default.value
    head = (mindie_version or "").split(".")[0]
    if head.isdigit() and int(head) < 3:
        env["MINDIE_LLM_FRAMEWORK_BACKEND"] = "ATB"  # read up to 2.3 only (environment_variable.md:82 @40fb0630)
    else:
        env.pop("MINDIE_LLM_FRAMEWORK_BACKEND", None)
    for stale in ("MS_SCHED_HOST", "MS_SCHED_PORT", "LCAL_IF_PORT"):  # the ms backend's, meaningless here
        if stale not in base:
            env.pop(stale, None)
    if world_size > 1:  # multi-card: torch.distributed inside the model workers needs a rendezvous (FAQ)
        env.setdefault("MASTER_ADDR", "127.0.0.1")
        env.setdefault("MASTER_PORT", str(free_port(DEFAULT_MASTER_PORT)))
    if mindie_service is not None and head.isdigit() and int(head) < 3:
        env["MIES_INSTALL_PATH"] = str(mindie_service)
    if devices:
        env["ASCEND_RT_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
    if extra_pythonpath:
        env["PYTHONPATH"] = os.pathsep.join([*map(str, extra_pythonpath), *filter(None, [env.get("PYTHONPATH")])])
    env.update(overrides or {})
    env.pop("RANK_TABLE_FILE", None)
    added = {k: v for k, v in env.items() if base.get(k) != v}
    return DaemonEnv(env, [str(s) for s in present], missing, added)
