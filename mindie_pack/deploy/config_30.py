"""STOPGAP, owned by the atb work until the config package renders the 3.0 layout itself (branch `config`).

MindIE 3.0's config.json = the 2.3.0 one with these documented differences, and nothing else: the shipped
src/server/conf/config.json diffed between 40fb0630 (2.3.0) and 8b4871ad (3.0.0):
- removed: the key-password and KMC entries (ServerConfig tlsPkPwd, managementTlsPkPwd, metricsTlsPkPwd,
  kmcKsfMaster, kmcKsfStandby, interCommPkPwd; BackendConfig interNodeTlsPkPwd, interNodeKmcKsfMaster,
  interNodeKmcKsfStandby) — 40fb0630 lines 19, 25, 31, 34-35, 43, 70, 73-74;
- added: ServerConfig.HealthCheckConfig {"npuUsageThreshold": 0} — 8b4871ad lines 50-53;
- ModelDeployConfig.truncation: 0 instead of false — 8b4871ad line 75 (the checker accepts bool or int,
  param_checker.cpp GetTruncationParamDefaultValue).
The compulsory fields are the same in both (mindie-3.0-and-atb.md §1.5), so the 2.x validation still applies; the
one 3.0 rule on top is the backend: only atb or torch (mindie_llm/text_generator/adapter/__init__.py:33 @8b4871ad).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mindie_pack.errors import PackError
from mindie_pack.spec import Spec

RENDER_AS = "2.3.0"  # the release whose layout 3.0's is derived from
REMOVED_SERVER_KEYS = ("tlsPkPwd", "managementTlsPkPwd", "metricsTlsPkPwd", "kmcKsfMaster", "kmcKsfStandby",
                       "interCommPkPwd")
REMOVED_BACKEND_KEYS = ("interNodeTlsPkPwd", "interNodeKmcKsfMaster", "interNodeKmcKsfStandby")
BACKENDS_30 = ("atb", "torch")


def is_30(version: str | None) -> bool:
    head = (version or "").split(".")[0]
    return head.isdigit() and int(head) >= 3


def to_3_0_layout(config: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(config)
    server = out["ServerConfig"]
    for key in REMOVED_SERVER_KEYS:
        server.pop(key, None)
    server.setdefault("HealthCheckConfig", {"npuUsageThreshold": 0})
    backend = out["BackendConfig"]
    for key in REMOVED_BACKEND_KEYS:
        backend.pop(key, None)
    deploy = backend["ModelDeployConfig"]
    if isinstance(deploy.get("truncation"), bool):
        deploy["truncation"] = -1 if deploy["truncation"] else 0  # true means -1 (param_checker.cpp)
    return out


def backend_problem(config: dict[str, Any], version: str) -> str | None:
    for index, model in enumerate(config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"]):
        backend = model.get("backendType")
        if backend not in BACKENDS_30:
            return (f"BackendConfig.ModelDeployConfig.ModelConfig[{index}].backendType: {backend!r} is not served by "
                    f"MindIE {version} (its C++ check accepts it, then the Python engine fails at start: "
                    "mindie_llm/text_generator/adapter/__init__.py:33); build the HF folder with --profile atb "
                    "and serve backendType \"atb\"")
    return None


def render_config_30(spec: Spec | None, *, model_dir: Path, version: str, sets: Sequence[str],
                     backend: str = "atb") -> dict[str, Any]:
    """Render as 2.3.0 (validated by the 2.x rules, with backendType atb), then apply the 3.0 differences and set
    the backend: 3.0's check accepts atb, ms and torch (model_deploy_config.cpp:456 @8b4871ad), its engine only
    atb and torch."""
    from mindie_pack.config import render_config

    config = to_3_0_layout(render_config(spec, model_dir=model_dir, mindie_version=RENDER_AS,
                                         sets=["ModelConfig[0].backendType=atb", *sets]))
    config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["backendType"] = backend
    problem = backend_problem(config, version)
    if problem:
        raise PackError(problem)
    return config


def accepted_by_30(problems: list[Any], path: Path) -> list[Any]:
    """The 2.x schema's backendType enum (atb, ms) minus what 3.0's check also accepts (torch:
    model_deploy_config.cpp:456 @8b4871ad); for the emulator's 3.0 mode until the config package has 3.0 rules."""
    import json

    try:
        data = json.loads(path.read_text())
        models = data["BackendConfig"]["ModelDeployConfig"]["ModelConfig"]
        assert isinstance(models, list)
    except (OSError, ValueError, KeyError, TypeError, AssertionError):
        return problems  # reported by the file checks already
    torch_paths = {f"BackendConfig.ModelDeployConfig.ModelConfig[{i}].backendType" for i, m in enumerate(models)
                   if isinstance(m, dict) and m.get("backendType") == "torch"}
    return [p for p in problems if getattr(p, "path", None) not in torch_paths]
