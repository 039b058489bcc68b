"""Validation entry points: schema + cross-field rules (+ model directory, + the config file's own rules)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mindie_pack.config.files import config_file_problems, model_dir_problems, tls_problems
from mindie_pack.config.problems import Problem
from mindie_pack.config.rules import semantic_problems
from mindie_pack.config.schema import schema_problems
from mindie_pack.config.versions import detect_version, line_for


def validate_config(data: Any, *, version: str | None = None, check_model_dir: bool = True,
                    daemon_uid: int | None = None, install_dir: Path | None = None) -> list[Problem]:
    if not isinstance(data, dict):
        return [Problem("(root)", "expected a JSON object")]
    line = line_for(version) if version else detect_version(data)
    problems = schema_problems(data, line)
    problems += semantic_problems(data, npu_mem_warning=not check_model_dir)
    server = data.get("ServerConfig") if isinstance(data.get("ServerConfig"), dict) else {}
    problems += tls_problems(server, install_dir)
    if check_model_dir:
        deploy = ((data.get("BackendConfig") or {}).get("ModelDeployConfig") or {}) \
            if isinstance(data.get("BackendConfig"), dict) else {}
        models = deploy.get("ModelConfig") if isinstance(deploy, dict) else None
        for index, model in enumerate(models if isinstance(models, list) else []):
            if isinstance(model, dict):
                problems += model_dir_problems(model, index, daemon_uid)
    return problems


def load_config_file(path: Path) -> tuple[Any, list[Problem]]:
    try:
        return json.loads(path.read_text()), []
    except FileNotFoundError:
        return None, [Problem(str(path), "file not found")]
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, [Problem(str(path), f"Json file is invalid. Please check json format! ({exc})")]


def validate_config_file(path: Path, *, version: str | None = None, daemon_uid: int | None = None,
                         check_model_dir: bool = True, install_dir: Path | None = None) -> list[Problem]:
    """Everything the daemon checks at start: the file rules, then the content."""
    problems = config_file_problems(path, daemon_uid)
    if any(p.message.startswith(("is a symlink", "file not found", "size ")) for p in problems):
        return problems
    data, parse_problems = load_config_file(path)
    if parse_problems:
        return problems + parse_problems
    return problems + validate_config(data, version=version, check_model_dir=check_model_dir,
                                      daemon_uid=daemon_uid, install_dir=install_dir)
