"""File rules the daemon enforces on config.json and on the ms backend's model directory, and TLS files."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from mindie_pack.config.problems import Problem

MAX_CONFIG_BYTES = 10 * 1024 * 1024
MDC = "BackendConfig.ModelDeployConfig"


def _mode_problem(path: Path, limit: int, where: str) -> Problem | None:
    mode = stat.S_IMODE(path.lstat().st_mode)
    if mode & ~limit:
        return Problem(where, f"{path} has mode {mode:04o}, wider than {limit:04o}: chmod {limit:o} {path}")
    return None


def _owner_problem(path: Path, uid: int, where: str) -> Problem | None:
    owner = path.lstat().st_uid
    if owner != uid:
        return Problem(where, f"{path} is owned by uid {owner} but the daemon runs as uid {uid}: "
                       f"chown {uid} {path}")
    return None


def config_file_problems(path: Path, daemon_uid: int | None = None) -> list[Problem]:
    """config.json itself: not a symlink, size in (0, 10 MB], mode <= 0640, owned by the daemon's user."""
    where = str(path)
    if path.is_symlink():
        return [Problem(where, f"is a symlink (The file {path} is a link.): install a regular file")]
    if not path.is_file():
        return [Problem(where, "file not found")]
    size = path.stat().st_size
    if size == 0 or size > MAX_CONFIG_BYTES:
        return [Problem(where, f"size {size} bytes: must be in (0, 10 MB]")]
    uid = os.getuid() if daemon_uid is None else daemon_uid
    return [p for p in (_mode_problem(path, 0o640, where), _owner_problem(path, uid, where)) if p]


def model_dir_problems(model: dict[str, Any], index: int, daemon_uid: int | None = None) -> list[Problem]:
    """modelWeightPath for backendType ms: what MindIE's SafePath and MindFormers' ModelRunner require."""
    where = f"{MDC}.ModelConfig[{index}].modelWeightPath"
    raw = model.get("modelWeightPath")
    if not isinstance(raw, str) or not raw:
        return []
    path = Path(raw)
    if ".." in path.parts:
        return [Problem(where, f"{raw} contains '..'")]
    if path.is_symlink():
        return [Problem(where, f"{raw} is a symlink: MindIE refuses it; point at the real directory "
                        f"{path.resolve()}")]
    if not path.exists():
        return [Problem(where, f"{raw} does not exist (build it with `mindie-pack build`)")]
    if not path.is_dir():
        return [Problem(where, f"{raw} is not a directory")]
    uid = os.getuid() if daemon_uid is None else daemon_uid
    problems = [p for p in (_mode_problem(path, 0o750, where), _owner_problem(path, uid, where)) if p]
    config = path / "config.json"
    if not config.is_file():
        problems.append(Problem(where, f"{config} is missing (the server reads the HF config.json)"))
    elif config.is_symlink():
        problems.append(Problem(where, f"{config} is a symlink: MindIE refuses it"))
    else:
        problems += [p for p in (_mode_problem(config, 0o750, where),) if p]
    if model.get("backendType") != "ms":
        return problems
    yamls = sorted(p.name for p in path.iterdir() if p.suffix == ".yaml")
    if len(yamls) != 1:
        problems.append(Problem(where, f"{raw} has {len(yamls)} .yaml files ({', '.join(yamls) or 'none'}): the ms "
                                "backend loads the first one listed, keep exactly one"))
        return problems
    problems += _yaml_problems(path / yamls[0], model, index)
    return problems


def _yaml_problems(yaml_path: Path, model: dict[str, Any], index: int) -> list[Problem]:
    where = f"{MDC}.ModelConfig[{index}].worldSize"
    try:
        doc = yaml.safe_load(yaml_path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        return [Problem(str(yaml_path), f"unreadable yaml ({exc})")]
    parallel = doc.get("parallel_config") or {}
    model_parallel = parallel.get("model_parallel", 1)
    world = model.get("worldSize")
    problems = []
    if isinstance(world, int) and model_parallel != world:
        problems.append(Problem(where, f"{world} but {yaml_path.name} has parallel_config.model_parallel "
                                f"{model_parallel}: they must be equal (rebuild with --tp {world})"))
    if isinstance(world, int) and world > 1 and doc.get("use_parallel") is False:
        problems.append(Problem(where, f"{world} but {yaml_path.name} has use_parallel: False"))
    arch = ((doc.get("model") or {}).get("arch") or {}).get("type")
    if model.get("npuMemSize") == -1 and arch not in ("ParallelLlamaForCausalLM", "InferenceDeepseekV3ForCausalLM"):
        problems.append(Problem(f"{MDC}.ModelConfig[{index}].npuMemSize",
                                f"-1 is refused by MindFormers for {arch} (npu_mem_size=-1 only support in parallel "
                                "mode): set a size in GB, e.g. 8"))
    return problems


def tls_problems(server: dict[str, Any], install_dir: Path | None) -> list[Problem]:
    """httpsEnabled needs the certificate files (relative paths are under the mindie-service install dir)."""
    if server.get("httpsEnabled") is not True:
        return []
    problems = []
    for key in ("tlsCert", "tlsPk", "tlsPkPwd"):
        value = server.get(key)
        if not isinstance(value, str) or not value:
            problems.append(Problem(f"ServerConfig.{key}", "missing: httpsEnabled true needs the TLS files"))
            continue
        path = Path(value) if Path(value).is_absolute() or install_dir is None else install_dir / value
        if install_dir is not None or Path(value).is_absolute():
            if not path.is_file():
                problems.append(Problem(f"ServerConfig.{key}", f"{path} not found (httpsEnabled is true); add the "
                                        "file or set httpsEnabled false"))
    if install_dir is None and not problems:
        problems.append(Problem("ServerConfig.httpsEnabled", "true: TLS file paths are relative to the MindIE "
                                "install directory, which is unknown here, so they were not checked", "warning"))
    return problems
