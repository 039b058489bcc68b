"""Compulsory fields per release: which key, from which release on, and where that is written.

A missing field is an error for a release at or after `since`. For a closed release before `since` (a later
release made the field compulsory, the docs of this one are unsure) it is a warning "required from <since>".
`Version` and `truncation` are in no row: 2.3.0 never reads `Version` and reads `truncation` as optional
(model_deploy_config.cpp:36, default false).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mindie_pack.config.problems import Problem
from mindie_pack.config.releases import BY_NAME, Release

S, B, MD, SC = ("ServerConfig",), ("BackendConfig",), ("BackendConfig", "ModelDeployConfig"), \
    ("BackendConfig", "ScheduleConfig")
MC = ("BackendConfig", "ModelDeployConfig", "ModelConfig[]")
SRV, BCK = "src/config_manager/server_config.cpp", "src/config_manager/backend_config.cpp"
MDC, SCH = "src/config_manager/model_deploy_config.cpp", "src/config_manager/schedule_config.cpp"
DOC_10 = "hiascend MindIE 1.0.RC3 config page (mindie_service0285) and the 1.0 configs MindFormers published"


@dataclass(frozen=True)
class Compulsory:
    section: tuple[str, ...]
    key: str
    since: str  # first release known to require it
    source: str  # MindIE-LLM file:line at 40fb0630 (and 8b4871ad, same table), or the doc page
    layouts: tuple[str, ...] = ("1.0", "2.x", "3.0")
    unconditional: bool = False  # declared optional but read without contains(): a missing key is a JSON null


def _rows(section: tuple[str, ...], keys: str, since: str, source: str, **kw: Any) -> list[Compulsory]:
    return [Compulsory(section, key, since, source, **kw) for key in keys.split()]


COMPULSORY: tuple[Compulsory, ...] = (
    *_rows((), "ServerConfig BackendConfig", "1.0.RC3", f"{DOC_10}; config_manager_impl.cpp (40fb0630)"),
    *_rows(("LogConfig",), "logLevel", "1.0.RC3", f"{DOC_10} (documented as required)", layouts=("1.0",)),
    *_rows(S, "ipAddress port maxLinkNum httpsEnabled", "1.0.RC3", f"{SRV}:24-67 (40fb0630); {DOC_10}"),
    *_rows(S, "inferMode metricsPort", "2.0.x", f"{SRV}:24-67 (40fb0630)"),
    *_rows(S, "tokenTimeout e2eTimeout", "2.0.x", f"{SRV}:58-59 (40fb0630); added with 2.0.RC1 (mindie-service.md "
           "§1.10)"),
    *_rows(S, "allowAllZeroIpListening", "2.3.0", f"{SRV}:24-67 (40fb0630); docs/zh/user_guide/user_manual/"
           "service_parameter_configuration.md:28 marks it 必填; absent from the published 1.0.RC3 configs"),
    *_rows(S, "distDPServerEnabled", "2.3.0", f"{SRV}:328 (40fb0630), :311 (8b4871ad): read without contains()",
           unconditional=True),
    *_rows(B, "backendName tokenizerProcessNumber modelInstanceNumber npuDeviceIds ScheduleConfig", "1.0.RC3",
           f"{BCK}:23-42 (40fb0630); {DOC_10}"),
    *_rows(B, "ModelDeployConfig", "1.0.RC3", f"{BCK}:175 (40fb0630): read without contains()"),
    *_rows(B, "multiNodesInferEnabled", "2.3.0", f"{BCK}:193 (40fb0630), :178 (8b4871ad): read without contains()",
           unconditional=True),
    *_rows(B, "interNodeTLSEnabled", "2.3.0", f"{BCK}:197 (40fb0630), :182 (8b4871ad): read without contains()",
           unconditional=True),
    *_rows(MD, "maxSeqLen maxInputTokenLen ModelConfig", "1.0.RC3", f"{MDC}:36 (40fb0630); {DOC_10}"),
    *_rows(MC, "cpuMemSize modelWeightPath modelName npuMemSize worldSize backendType", "1.0.RC3",
           f"{MDC}:39-42 (40fb0630); {DOC_10}"),
    *_rows(MC, "trustRemoteCode", "2.3.0", f"{MDC}:39-42 (40fb0630); absent from the published 1.0.RC3 configs"),
    *_rows(SC, "templateName templateType cacheBlockSize decodePolicyType decodeTimeMsPerReq maxBatchSize "
           "maxPreemptCount maxPrefillTokens maxIterTimes maxPrefillBatchSize maxQueueDelayMicroseconds "
           "prefillPolicyType prefillTimeMsPerReq supportSelectBatch", "1.0.RC3", f"{SCH}:23-36 (40fb0630); {DOC_10}"),
)
# The C++ name the daemon prints for a section (param_checker.h CheckMaxMinValue callers).
NATIVE_SECTION = {"ServerConfig": "serverConfig", "BackendConfig": "backendConfig", "ScheduleConfig": "scheduleParam",
                  "ModelDeployConfig": "modelDeployParam", "ModelConfig": "modelParam", "LogConfig": "logConfig"}


def _nodes(data: Any, section: tuple[str, ...]) -> list[tuple[str, dict[str, Any]]]:
    """(JSON path, object) for every object at `section`; missing or non-object sections give nothing."""
    found: list[tuple[str, Any]] = [("", data)]
    for part in section:
        step = []
        for path, node in found:
            name = part.removesuffix("[]")
            child = node.get(name) if isinstance(node, dict) else None
            where = f"{path}.{name}" if path else name
            if part.endswith("[]"):
                step += [(f"{where}[{i}]", item) for i, item in enumerate(child)] if isinstance(child, list) else []
            else:
                step.append((where, child))
        found = step
    return [(path, node) for path, node in found if isinstance(node, dict)]


def compulsory_problems(data: dict[str, Any], release: Release) -> list[Problem]:
    problems = []
    for row in COMPULSORY:
        if release.layout not in row.layouts:
            continue
        since = BY_NAME[row.since]
        if release.order < since.order and release.open_source:
            continue
        for path, node in _nodes(data, row.section):
            if row.key in node:
                continue
            where = f"{path}.{row.key}" if path else row.key
            if release.order >= since.order:
                native = ("JSON error in ConfigManager: [json.exception.type_error.302] type must be boolean, but is "
                          "null" if row.unconditional else
                          f"[ParamChecker::CheckJsonParamType] {row.key}: missing compulsory field")
                why = " (read unconditionally: the daemon stops with \"type must be boolean, but is null\")" \
                    if row.unconditional else ""
                problems.append(Problem(where, f"missing compulsory field{why}", "error", native=native,
                                        source=row.source))
            else:
                problems.append(Problem(where, f"missing: required from MindIE {row.since} on (not known to be "
                                        f"required by {release.name}; add it to be safe)", "warning",
                                        source=row.source))
    return problems
