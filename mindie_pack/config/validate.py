"""Validation entry points: which release judges the file, then its schema, compulsory fields, cross-field rules,
addresses, TLS, model directory and the config file's own rules. One line per problem."""

from __future__ import annotations

import json
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindie_pack.config.compulsory import compulsory_problems
from mindie_pack.config.detect import Judgement, judge
from mindie_pack.config.files import config_file_problems, model_dir_problems, tls_problems
from mindie_pack.config.network import address_problems
from mindie_pack.config.problems import Problem, unique
from mindie_pack.config.releases import Release
from mindie_pack.config.rules import semantic_problems
from mindie_pack.config.schema import schema_problems
from mindie_pack.config.unknown import unknown_key_problems

MAX_READ_BYTES = 16 * 1024 * 1024  # refuse before reading: MindIE's own cap is 10 MB (param_checker.h:115)
MAX_DEPTH = 64  # a MindIE config nests 5 levels; deeper input is not a config (and would exhaust the recursion)


@dataclass
class Report:
    """What `config validate --json` prints: the problems, and which release's rules judged the file and why."""
    problems: list[Problem]
    judgement: Judgement | None = None
    data: Any = None

    @property
    def valid(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)


def _section(data: Any, *keys: str) -> dict[str, Any]:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


def _one_release(data: dict[str, Any], rel: Release, *, check_model_dir: bool, daemon_uid: int | None,
                 install_dir: Path | None, environ: Mapping[str, str] | None) -> list[Problem]:
    problems = compulsory_problems(data, rel)  # the daemon reports a missing field before a bad value
    problems += schema_problems(data, rel.layout)
    problems += semantic_problems(data, npu_mem_warning=not check_model_dir, release=rel)
    server = _section(data, "ServerConfig")
    # 1.0.x is closed: the address rule of 2.3.0 is a warning there
    problems += address_problems(server, severity="warning" if rel.layout == "1.0" else "error", environ=environ)
    problems += tls_problems(server, install_dir, release=rel, environ=environ, daemon_uid=daemon_uid)
    if check_model_dir:
        models = _section(data, "BackendConfig", "ModelDeployConfig").get("ModelConfig")
        for index, model in enumerate(models if isinstance(models, list) else []):
            if isinstance(model, dict):
                problems += model_dir_problems(model, index, daemon_uid, release=rel, environ=environ)
    return problems


def _lenient(per_release: list[tuple[Release, list[Problem]]]) -> list[Problem]:
    """An error only where every candidate release refuses the same field; elsewhere a warning naming the rules."""
    error_paths = [{p.path for p in problems if p.severity == "error"} for _, problems in per_release]
    agreed = set.intersection(*error_paths) if error_paths else set()
    out: list[Problem] = []
    for rel, problems in per_release:
        for p in problems:
            if p.severity == "error" and p.path not in agreed:
                out.append(Problem(p.path, f"{p.message} (an error under the {rel.name} rules only; this file may "
                                   "belong to another release)", "warning", p.native, p.source))
            else:
                out.append(p)
    # the same field judged by several releases in different words: one line, an error where there is one
    by_path: dict[str, Problem] = {}
    for p in unique(out):
        kept = by_path.get(p.path)
        if kept is None or (p.severity == "error" and kept.severity == "warning"):
            by_path[p.path] = p
    return list(by_path.values())


def judge_and_validate(data: Any, judgement: Judgement, *, check_model_dir: bool = True,
                       daemon_uid: int | None = None, install_dir: Path | None = None,
                       environ: Mapping[str, str] | None = None) -> list[Problem]:
    if judgement.unsupported:
        return [Problem("(root)", judgement.unsupported)]
    if not isinstance(data, dict):
        return [Problem("(root)", "expected a JSON object")]
    per_release = [(rel, _one_release(data, rel, check_model_dir=check_model_dir, daemon_uid=daemon_uid,
                                      install_dir=install_dir, environ=environ)) for rel in judgement.releases]
    problems = per_release[0][1] if len(per_release) == 1 else _lenient(per_release)
    problems = problems + unknown_key_problems(data, sorted({r.layout for r in judgement.releases}), judgement.name)
    return unique(problems)


def validate_config(data: Any, *, version: str | None = None, check_model_dir: bool = True,
                    daemon_uid: int | None = None, install_dir: Path | None = None,
                    environ: Mapping[str, str] | None = None) -> list[Problem]:
    """`version`: a release ("2.3.0", "1.0.RC3", "3.0.0"), a layout ("2.x"), or None for the file's shape."""
    return judge_and_validate(data, judge(data, version=version), check_model_dir=check_model_dir,
                              daemon_uid=daemon_uid, install_dir=install_dir, environ=environ)


def _depth(data: Any) -> int:
    deepest, stack = 0, [(data, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            break
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else ()
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def load_config_file(path: Path, *, max_bytes: int = MAX_READ_BYTES) -> tuple[Any, list[Problem]]:
    """Parse a config.json after checking its type and size (never reads a device, a pipe or a huge file)."""
    where = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        return None, [Problem(where, "file not found")]
    except OSError as exc:
        return None, [Problem(where, f"cannot read ({exc.strerror or exc})")]
    if stat.S_ISDIR(info.st_mode):
        return None, [Problem(where, "is a directory: expected a config.json file")]
    if not stat.S_ISREG(info.st_mode):
        return None, [Problem(where, "is not a regular file (a device, pipe or socket): expected a config.json file")]
    if info.st_size > max_bytes:
        return None, [Problem(where, f"is {info.st_size:,} bytes: larger than {max_bytes // (1024 * 1024)} MiB, not "
                              "a MindIE config (MindIE's own limit is 10 MB)")]
    try:
        with path.open("rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        return None, [Problem(where, f"cannot read ({exc.strerror or exc})")]
    if len(raw) > max_bytes:
        return None, [Problem(where, f"grew past {max_bytes // (1024 * 1024)} MiB while being read")]
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return None, [Problem(where, f"is not UTF-8 text ({exc.reason} at byte {exc.start})")]
    except json.JSONDecodeError as exc:
        return None, [Problem(where, f"Json file is invalid. Please check json format! ({exc})",
                              native="Json file is invalid. Please check json format! ",
                              source="config_manager/param_checker.cpp:58 (40fb0630)")]
    except RecursionError:
        return None, [Problem(where, f"JSON nested deeper than Python can parse: not a MindIE config (it nests 5 "
                              f"levels; at most {MAX_DEPTH} accepted)")]
    if _depth(data) > MAX_DEPTH:
        return None, [Problem(where, f"JSON nested deeper than {MAX_DEPTH} levels: not a MindIE config (it nests 5 "
                              "levels)")]
    return data, []


def install_version_of(install_dir: Path | None) -> tuple[str | None, str]:
    """The version file next to a mindie-service folder (<version dir>/version.info), as discovery reads it."""
    if install_dir is None:
        return None, ""
    from mindie_pack.env.discovery import read_version_file

    for candidate in (install_dir.parent / "version.info", install_dir / "version.info"):
        try:
            version = read_version_file(candidate, ("mindie-service", "Ascend-mindie"))
        except (OSError, UnicodeDecodeError):
            version = None
        if version:
            return version, f"version file {candidate}"
    return None, ""


_FATAL = ("is a symlink", "file not found", "size ", "is a directory", "is not a regular file")


def validate_report(path: Path, *, version: str | None = None, daemon_uid: int | None = None,
                    check_model_dir: bool = True, install_dir: Path | None = None,
                    install_version: str | None = None, install_reason: str = "",
                    environ: Mapping[str, str] | None = None) -> Report:
    """Everything the daemon checks at start: the file rules, then the content, judged by one release."""
    pre = config_file_problems(path, daemon_uid, environ=environ)
    if any(p.message.startswith(_FATAL) for p in pre):
        return Report(pre)
    data, parse_problems = load_config_file(path)
    if parse_problems:
        return Report(parse_problems)
    if install_version is None and install_dir is not None:
        install_version, install_reason = install_version_of(install_dir)
    judgement = judge(data, version=version, install_version=install_version, install_reason=install_reason)
    file_problems = [] if judgement.unsupported else config_file_problems(path, daemon_uid,
                                                                          release=judgement.release,
                                                                          environ=environ)
    problems = file_problems + judge_and_validate(data, judgement, check_model_dir=check_model_dir,
                                                  daemon_uid=daemon_uid, install_dir=install_dir, environ=environ)
    return Report(unique(problems), judgement, data)


def validate_config_file(path: Path, *, version: str | None = None, daemon_uid: int | None = None,
                         check_model_dir: bool = True, install_dir: Path | None = None,
                         environ: Mapping[str, str] | None = None) -> list[Problem]:
    """The problems of validate_report (kept for the emulator daemon and deploy)."""
    return validate_report(path, version=version, daemon_uid=daemon_uid, check_model_dir=check_model_dir,
                           install_dir=install_dir, environ=environ).problems


def daemon_log_lines(problems: list[Problem]) -> list[str]:
    """The errors as the real daemon words them (for the emulator's log), one line each."""
    return [p.log_line for p in problems if p.severity == "error"]
