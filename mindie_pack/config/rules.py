"""Cross-field checks MindIE (and MindFormers, for the ms backend) enforce that a schema cannot express.

Each message names the JSON path; the daemon's own wording is kept where the reference records it.
"""

from __future__ import annotations

from typing import Any

from mindie_pack.config.problems import Problem
from mindie_pack.config.releases import BY_NAME, Release

NPU_MEM_AUTO_ARCHES = ("ParallelLlamaForCausalLM", "InferenceDeepseekV3ForCausalLM")
B = "BackendConfig"
MDC = f"{B}.ModelDeployConfig"
SC = f"{B}.ScheduleConfig"
S = "ServerConfig"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _section(data: Any, *keys: str) -> dict[str, Any]:
    for key in keys:
        data = data.get(key) if isinstance(data, dict) else None
    return data if isinstance(data, dict) else {}


MS_ON_3 = ("MindIE 3.0.0 has no MindSpore backend (removed by MindIE-LLM commit 2072a951): its C++ config check "
           "still accepts \"ms\" (src/config_manager/model_deploy_config.cpp:456 at v3.0.0), but the Python engine "
           "then fails at start ('Unsupported backend type', mindie_llm/text_generator/adapter/__init__.py:33). Serve "
           "the Hugging Face folder with backendType \"atb\" (or \"torch\"): `mindie-pack build --profile atb` and "
           "`mindie-pack config render --mindie-version 3.0.0`; or keep the ms model on MindIE 2.3.0")


def semantic_problems(data: dict[str, Any], *, npu_mem_warning: bool = True,
                      release: Release | None = None) -> list[Problem]:
    """`npu_mem_warning`: flag npuMemSize -1 for ms in general (when the model's yaml is not read to decide)."""
    rel = release or BY_NAME["2.3.0"]
    problems: list[Problem] = []
    backend, deploy = _section(data, B), _section(data, B, "ModelDeployConfig")
    schedule, server = _section(data, B, "ScheduleConfig"), _section(data, S)
    models = deploy.get("ModelConfig") if isinstance(deploy.get("ModelConfig"), list) else []
    first = models[0] if models and isinstance(models[0], dict) else {}
    problems += _device_checks(backend, first)
    if schedule.get("templateType", "Standard") == "Standard" and isinstance(deploy.get("ModelConfig"), list) \
            and len(models) != 1:
        problems.append(Problem(f"{MDC}.ModelConfig", f"has {len(models)} elements: there should be one "
                                "modelParam for Standard templateType"))
    problems += _length_checks(deploy, schedule, first, rel)
    problems += _port_checks(server, backend)
    problems += _release_checks(deploy, schedule, models, rel)
    problems += _inter_node_tls(backend, rel)
    for index, model in enumerate(models):
        if npu_mem_warning and isinstance(model, dict) and model.get("backendType") == "ms" \
                and _int(model.get("npuMemSize")) == -1:
            problems.append(Problem(f"{MDC}.ModelConfig[{index}].npuMemSize",
                                    "-1 (automatic) is refused by MindFormers for this model unless its yaml "
                                    f"arch is {' or '.join(NPU_MEM_AUTO_ARCHES)} (\"npu_mem_size=-1 only support in "
                                    "parallel mode\"); set a size in GB, e.g. 8", "warning"))
    block = _int(schedule.get("cacheBlockSize"))
    if block is not None and 0 < block <= 128 and block != 128 and block % 16:
        problems.append(Problem(f"{SC}.cacheBlockSize", f"{block}: use 128, or a multiple of 16", "warning"))
    return problems


def _device_checks(backend: dict[str, Any], first: dict[str, Any]) -> list[Problem]:
    problems = []
    ids = backend.get("npuDeviceIds")
    instances = _int(backend.get("modelInstanceNumber"))
    world = _int(first.get("worldSize"))
    if not isinstance(ids, list):
        return problems
    if instances is not None and len(ids) != instances:
        problems.append(Problem(f"{B}.npuDeviceIds", f"has {len(ids)} device list(s) but modelInstanceNumber is "
                                f"{instances}: the size of npuDeviceIds does not equal to modelInstanceNumber"))
    for index, devices in enumerate(ids):
        if not isinstance(devices, list):
            continue
        if len(set(map(str, devices))) != len(devices):
            repeated = sorted({d for d in devices if devices.count(d) > 1}, key=str)
            problems.append(Problem(f"{B}.npuDeviceIds[{index}]", f"device {repeated[0]} is listed twice: "
                                    "npuDeviceID does not allow repetitive element"))
        elif world is not None and len(devices) != world:
            problems.append(Problem(f"{B}.npuDeviceIds[{index}]", f"lists {len(devices)} device(s) but "
                                    f"ModelConfig[0].worldSize is {world}: the size of npuDeviceIds (subset) does "
                                    "not equal to worldSize"))
    return problems


def _release_checks(deploy: dict[str, Any], schedule: dict[str, Any], models: list[Any],
                    rel: Release) -> list[Problem]:
    problems = []
    for index, model in enumerate(models):
        if not isinstance(model, dict):
            continue
        if rel.name == "3.0.0" and model.get("backendType") == "ms":
            problems.append(Problem(f"{MDC}.ModelConfig[{index}].backendType", f"\"ms\": {MS_ON_3}",
                                    source="mindie_llm/text_generator/adapter/__init__.py:33 (8b4871ad)"))
        for key in ("dp", "sp", "cp"):  # model_deploy_config.cpp:116-118 (40fb0630)
            value = _int(model.get(key))
            if value is not None and value < 1:
                problems.append(Problem(f"{MDC}.ModelConfig[{index}].{key}", f"{value}: {key} cannot be smaller "
                                        "than 1", native=f"{key} cannot be smaller than 1.",
                                        source="config_manager/model_deploy_config.cpp:116-118 (40fb0630)"))
    if rel.layout == "3.0":
        truncation = deploy.get("truncation")
        if "truncation" in deploy and type(truncation) not in (bool, int):
            problems.append(Problem(f"{MDC}.truncation", f"{truncation!r} is neither a boolean nor an integer: MindIE "
                                    "3.0.0 logs it as invalid and uses 0 (refuse over-long input)", "warning",
                                    source="config_manager/param_checker.cpp:215-231 (8b4871ad)"))
        max_n, batch = _int(schedule.get("maxN")), _int(schedule.get("maxBatchSize"))
        if max_n is not None and batch is not None and max_n > batch:
            problems.append(Problem(f"{SC}.maxN", f"{max_n} is greater than maxBatchSize {batch}",
                                    native="The maxN cannot be set greater than maxBatchSize",
                                    source="config_manager/schedule_config.cpp:256 (8b4871ad)"))
    return problems


# interNodeTLSEnabled true: read at init without contains(), a missing one stops the daemon with "Failed to init tls
# cfg" (backend_config.cpp:60-100,199-207 at 40fb0630; :54-66 at 8b4871ad, without the KMC and PkPwd keys).
_INTER_NODE_TLS = {"2.x": ("interNodeKmcKsfMaster", "interNodeKmcKsfStandby", "interNodeTlsCert", "interNodeTlsPk",
                           "interNodeTlsPkPwd", "interNodeTlsCaPath", "interNodeTlsCrlPath"),
                   "3.0": ("interNodeTlsCert", "interNodeTlsPk", "interNodeTlsCaPath", "interNodeTlsCrlPath")}


def _inter_node_tls(backend: dict[str, Any], rel: Release) -> list[Problem]:
    if backend.get("interNodeTLSEnabled") is not True or rel.layout not in _INTER_NODE_TLS:
        return []
    source = ("config_manager/backend_config.cpp:60-100,199-207 (40fb0630)" if rel.layout == "2.x" else
              "config_manager/backend_config.cpp:54-66 (8b4871ad)")
    problems = [Problem(f"{B}.{key}", "missing or not a string: interNodeTLSEnabled true reads it (set it, or set "
                        "interNodeTLSEnabled false)", native="Failed to init tls cfg", source=source)
                for key in _INTER_NODE_TLS[rel.layout] if not isinstance(backend.get(key), str)]
    for key, low in (("interNodeTlsCaFiles", 1), ("interNodeTlsCrlFiles", 0)):
        files = backend.get(key)
        if not isinstance(files, list) or not all(isinstance(f, str) for f in files) or not low <= len(files) <= 3:
            problems.append(Problem(f"{B}.{key}", f"must list {low} to 3 file names when interNodeTLSEnabled is true",
                                    native=f"{key} size is invalid", source=source))
    return problems


def _length_checks(deploy: dict[str, Any], schedule: dict[str, Any], first: dict[str, Any],
                   rel: Release) -> list[Problem]:
    problems = []
    max_seq, max_input = _int(deploy.get("maxSeqLen")), _int(deploy.get("maxInputTokenLen"))
    prefill_tokens = _int(schedule.get("maxPrefillTokens"))
    batch, prefill_batch = _int(schedule.get("maxBatchSize")), _int(schedule.get("maxPrefillBatchSize"))
    preempt, iters = _int(schedule.get("maxPreemptCount")), _int(schedule.get("maxIterTimes"))
    # 2.3.0 applies it to every templateType (config_manager_impl.cpp:299); 3.0.0 exempts Mix
    mix_exempt = rel.layout == "3.0" and schedule.get("templateType") == "Mix"
    if prefill_tokens is not None and max_input is not None and not mix_exempt and prefill_tokens < max_input:
        problems.append(Problem(f"{SC}.maxPrefillTokens", f"{prefill_tokens} is less than "
                                f"ModelDeployConfig.maxInputTokenLen {max_input}: the value of maxPrefillTokens should "
                                "not be less than maxInputTokenLen"))
    if max_seq is not None and max_input is not None and max_input >= max_seq:
        problems.append(Problem(f"{MDC}.maxInputTokenLen", f"{max_input} is not below maxSeqLen {max_seq}: the "
                                f"effective input limit becomes {max_seq - 1}; set maxInputTokenLen < maxSeqLen",
                                "warning"))
    if batch is not None and prefill_batch is not None and prefill_batch > batch:
        problems.append(Problem(f"{SC}.maxPrefillBatchSize", f"{prefill_batch} is greater than maxBatchSize {batch}"))
    if batch is not None and preempt is not None and preempt > batch:
        problems.append(Problem(f"{SC}.maxPreemptCount", f"{preempt} is greater than maxBatchSize {batch}"))
    if preempt and _int(first.get("cpuMemSize")) == 0:
        problems.append(Problem(f"{MDC}.ModelConfig[0].cpuMemSize", f"is 0 but ScheduleConfig.maxPreemptCount is "
                                f"{preempt}: preemption swaps to CPU memory, give cpuMemSize > 0"))
    if iters is not None and max_seq is not None and iters > max_seq:
        problems.append(Problem(f"{SC}.maxIterTimes", f"{iters} is greater than ModelDeployConfig.maxSeqLen "
                                f"{max_seq}", "warning"))
    return problems


def _port_checks(server: dict[str, Any], backend: dict[str, Any]) -> list[Problem]:
    problems = []
    port = _int(server.get("port"))
    management = _int(server.get("managementPort")) if "managementPort" in server else port
    metrics = _int(server.get("metricsPort"))
    same_ip = server.get("managementIpAddress", server.get("ipAddress")) == server.get("ipAddress")
    if port is not None and port == metrics and management != port and same_ip:
        problems.append(Problem(f"{S}.metricsPort", f"{metrics} equals port but managementPort is {management}: "
                                "Management or Business or Metrics port is invalid (use all equal, or metricsPort "
                                "apart from port)"))
    # the default 1120 counts when the key is absent (include/config/config_info.h:194, config_manager_impl.cpp:282)
    infer_port = _int(backend.get("multiNodesInferPort", 1120))
    if port is not None and infer_port == port:
        problems.append(Problem(f"{B}.multiNodesInferPort", f"{infer_port}: Endpoint port cannot be equal to "
                                "multiNodesInferPort"))
    return problems  # the addresses themselves: config/network.py
