"""File rules the daemon enforces, per release: config.json itself, the model directory, the TLS files.

2.3.0 (40fb0630) and 3.0.0 (8b4871ad) differ on the model directory (utils/safe_path.cpp): 2.3.0 resolves
symlinks and forbids only group/other write, skipped for root; 3.0.0 caps the directory at 0750 and its
config.json at 0640, requires the daemon's user as owner unless root, and MINDIE_CHECK_INPUTFILES_PERMISSION=0
turns those failures into warnings. The closed releases are judged by the 2.3.0 rules (their docs give none
stricter that we could verify).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from mindie_pack.config.problems import Problem, Severity
from mindie_pack.config.releases import BY_NAME, Release

MAX_CONFIG_BYTES = 10 * 1024 * 1024  # include/config/param_checker.h:115 (40fb0630)
MAX_MODEL_CONFIG_BYTES = 500 * 1024 * 1024  # utils/safe_io.cpp:23 (40fb0630)
MDC = "BackendConfig.ModelDeployConfig"
PATH_CHARS = re.compile(r"^(?!.*\.\.)[a-zA-Z0-9_./-]+$")  # utils/safe_path.cpp:322 (40fb0630)
BYPASS = "MINDIE_CHECK_INPUTFILES_PERMISSION"
SRC_CONFIG = "config_manager/param_checker.cpp:32-45, utils/log/file_utils.cpp:225-390 (40fb0630)"
SRC_DIR_23 = "utils/safe_path.cpp:112-125,281,303-312 (40fb0630)"
SRC_DIR_30 = "config_manager/model_deploy_config.cpp:467, utils/safe_path.cpp:281-335, utils/safe_io.cpp:30 (8b4871ad)"


def _release(release: Release | None) -> Release:
    return release or BY_NAME["2.3.0"]


def _bypassed(environ: Mapping[str, str] | None) -> bool:
    return (os.environ if environ is None else environ).get(BYPASS) == "0"


def _mode_problem(path: Path, limit: int, where: str, severity: Severity, source: str) -> Problem | None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & ~limit:
        return Problem(where, f"{path} has mode {mode:04o}, wider than {limit:04o}: chmod {limit:o} {path}",
                       severity, native=f"Check path: {path} failed, current permission is {mode:o}, required no "
                       f"greater than {limit:o}", source=source)
    return None


def _owner_problem(path: Path, uid: int, where: str, severity: Severity, source: str) -> Problem | None:
    owner = path.stat().st_uid
    if owner != uid:
        return Problem(where, f"{path} is owned by uid {owner} but the daemon runs as uid {uid}: chown {uid} {path}",
                       severity, native=f"Check path: {path} failed, owner id diff", source=source)
    return None


def _group_other_write(path: Path, where: str, source: str) -> Problem | None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & (stat.S_IWGRP | stat.S_IWOTH):
        return Problem(where, f"{path} is writable by group or others (mode {mode:04o}): chmod go-w {path}",
                       native=f"Path writable by group or others: {path}", source=source)
    return None


def config_file_problems(path: Path, daemon_uid: int | None = None, *, release: Release | None = None,
                         environ: Mapping[str, str] | None = None) -> list[Problem]:
    """config.json itself: not a symlink, a regular file, size in (0, 10 MB], mode <= 0640, owned by the daemon's
    user (no root exception, file_utils.cpp:356). MINDIE_CHECK_INPUTFILES_PERMISSION=0 makes mode and owner
    warnings up to 2.3.0 (param_checker.cpp:35-37); 3.0.0 removed that bypass for config.json."""
    where = str(path)
    if path.is_symlink():
        return [Problem(where, f"is a symlink (The file {path} is a link.): install a regular file",
                        native=f"The file: {path} is a link.", source=SRC_CONFIG)]
    if not path.exists():
        return [Problem(where, "file not found")]
    if not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file (a device, pipe or socket)"
        return [Problem(where, f"is {kind}: expected a config.json file")]
    size = path.stat().st_size
    if size == 0 or size > MAX_CONFIG_BYTES:
        return [Problem(where, f"size {size} bytes: must be in (0, 10 MB]", native=f"Check path: {path} failed, "
                        "file is too large", source="include/config/param_checker.h:115 (40fb0630)")]
    rel = _release(release)
    severity: Severity = "warning" if _bypassed(environ) and rel.order < BY_NAME["3.0.0"].order else "error"
    uid = os.getuid() if daemon_uid is None else daemon_uid
    return [p for p in (_mode_problem(path, 0o640, where, severity, SRC_CONFIG),
                        _owner_problem(path, uid, where, severity, SRC_CONFIG)) if p]


def model_dir_problems(model: dict[str, Any], index: int, daemon_uid: int | None = None, *,
                       release: Release | None = None, environ: Mapping[str, str] | None = None) -> list[Problem]:
    """modelWeightPath: the release's SafePath rules, plus what MindFormers' ModelRunner needs for backendType ms."""
    where = f"{MDC}.ModelConfig[{index}].modelWeightPath"
    raw = model.get("modelWeightPath")
    if not isinstance(raw, str) or not raw:
        return []
    rel = _release(release)
    source = SRC_DIR_30 if rel.name == "3.0.0" else SRC_DIR_23
    given = Path(raw)
    if not given.exists():
        return [Problem(where, f"{raw} does not exist (build it with `mindie-pack build`)")]
    path = given.resolve()  # SafePath canonicalises before its checks (safe_path.cpp:112-125)
    if not PATH_CHARS.match(str(path)):
        return [Problem(where, f"{path} has characters MindIE refuses (allowed: letters, digits, _ . / -)",
                        source=source)]
    if not path.is_dir():
        return [Problem(where, f"{raw} is not a directory")]
    uid = os.getuid() if daemon_uid is None else daemon_uid
    config = path / "config.json"
    problems: list[Problem] = []
    if rel.name == "3.0.0":
        if uid != 0:  # root skips both checks (safe_path.cpp:292,316)
            severity: Severity = "warning" if _bypassed(environ) else "error"
            problems += [p for p in (_mode_problem(path, 0o750, where, severity, source),
                                     _owner_problem(path, uid, where, severity, source)) if p]
            if config.is_file():
                problems += [p for p in (_mode_problem(config, 0o640, where, severity, source),
                                         _owner_problem(config, uid, where, severity, source)) if p]
    elif uid != 0:  # 2.3.0: only group/other write is refused, and not for root (safe_path.cpp:303-312)
        problems += [p for p in (_group_other_write(path, where, source),) if p]
        if config.is_file():
            problems += [p for p in (_group_other_write(config, where, source),) if p]
    if not os.access(path, os.R_OK | os.X_OK):
        problems.append(Problem(where, f"{path} is not readable by this user", source=source))
    if not config.is_file():
        problems.append(Problem(where, f"{config} is missing (the server reads the HF config.json)",
                                source="config_manager/model_deploy_config.cpp:56-62 (40fb0630)"))
    elif config.stat().st_size > MAX_MODEL_CONFIG_BYTES:
        problems.append(Problem(where, f"{config} is larger than 500 MB", source="utils/safe_io.cpp:23 (40fb0630)"))
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
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        return [Problem(str(yaml_path), f"unreadable yaml ({exc})")]
    if not isinstance(doc, dict):
        return [Problem(str(yaml_path), "expected a YAML mapping (a MindFormers config)")]
    parallel = doc.get("parallel_config") or {}
    model_parallel = parallel.get("model_parallel", 1) if isinstance(parallel, dict) else 1
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


# ServerConfig TLS keys checked when httpsEnabled (server_config.cpp:417-640 at 40fb0630; KMC and *PkPwd keys are
# gone at 8b4871ad). Business keys always; management and metrics keys unless all three planes share ip and port.
_TLS_FILES = ("tlsCert", "tlsPk")
_TLS_PLANES = (("managementTlsCert", "managementTlsPk"), ("metricsTlsCert", "metricsTlsPk"))
SRC_TLS = "config_manager/server_config.cpp:417-640, param_checker.cpp:330-345 (40fb0630)"


def tls_problems(server: dict[str, Any], install_dir: Path | None, *, release: Release | None = None,
                 environ: Mapping[str, str] | None = None, daemon_uid: int | None = None) -> list[Problem]:
    """httpsEnabled needs the certificate files (relative paths are under the mindie-service install dir)."""
    if server.get("httpsEnabled") is not True:
        return []
    rel = _release(release)
    problems: list[Problem] = []
    keys = list(_TLS_FILES)
    if rel.layout != "3.0":
        keys += ["kmcKsfMaster", "kmcKsfStandby"]  # server_config.cpp:427-431 (40fb0630)
    separate = not (server.get("managementIpAddress", server.get("ipAddress")) == server.get("ipAddress")
                    and server.get("managementPort", server.get("port")) == server.get("port")
                    and server.get("metricsPort") == server.get("port"))
    if separate:  # metrics-plane certificates came with 2.3.0 (mindie-service.md §1.10)
        keys += [k for plane in _TLS_PLANES[:1 if rel.order < BY_NAME["2.3.0"].order else 2] for k in plane]
    pk_pwd = server.get("tlsPkPwd")
    if rel.layout == "1.0":
        if not pk_pwd:  # the 1.0 docs list it with the TLS files; closed source: doubt is a warning
            problems.append(Problem("ServerConfig.tlsPkPwd", "missing: the 1.0.x docs list it with the TLS files",
                                    "warning", source="mindie-service.md §1.4 (hiascend 1.0.RC3 config page)"))
    elif rel.layout == "2.x" and isinstance(pk_pwd, str) and pk_pwd:
        keys.append("tlsPkPwd")  # checked only when non-empty (server_config.cpp:488)
    ca_files = server.get("tlsCaFile")
    if not isinstance(ca_files, list) or not 1 <= len(ca_files) <= 3:
        problems.append(Problem("ServerConfig.tlsCaFile", "must list 1 to 3 CA files when httpsEnabled is true",
                                native="ERR: serverConfig_.tlsCaFile size must in [1, 3] .", source=SRC_TLS))
    for key in keys:
        value = server.get(key)
        if not isinstance(value, str) or not value:
            problems.append(Problem(f"ServerConfig.{key}", "missing: httpsEnabled true needs the TLS files",
                                    source=SRC_TLS))
    if install_dir is None:
        if not problems:
            problems.append(Problem("ServerConfig.httpsEnabled", "true: TLS file paths are relative to the MindIE "
                                    "install directory, which is unknown here, so they were not checked", "warning"))
        return problems
    severity: Severity = "warning" if _bypassed(environ) else "error"
    uid = os.getuid() if daemon_uid is None else daemon_uid
    files = [(k, server.get(k)) for k in keys]
    ca_path = server.get("tlsCaPath") if isinstance(server.get("tlsCaPath"), str) else ""
    files += [("tlsCaFile", f"{ca_path}{name}") for name in (ca_files if isinstance(ca_files, list) else [])
              if isinstance(name, str)]
    for key, value in files:
        if not isinstance(value, str) or not value:
            continue
        path = Path(value) if Path(value).is_absolute() else install_dir / value
        if not path.is_file():
            problems.append(Problem(f"ServerConfig.{key}", f"{path} not found (httpsEnabled is true); add the file or "
                                    "set httpsEnabled false", source=SRC_TLS))
            continue
        problems += [p for p in (_mode_problem(path, 0o640, f"ServerConfig.{key}", severity, SRC_TLS),
                                 _owner_problem(path, uid, f"ServerConfig.{key}", severity, SRC_TLS)) if p]
    return problems
