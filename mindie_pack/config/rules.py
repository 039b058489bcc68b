"""Cross-field checks MindIE (and MindFormers, for the ms backend) enforce that a schema cannot express.

Each message names the JSON path; the daemon's own wording is kept where the reference records it.
"""

from __future__ import annotations

from typing import Any

from mindie_pack.config.problems import Problem

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


def semantic_problems(data: dict[str, Any], *, npu_mem_warning: bool = True) -> list[Problem]:
    """`npu_mem_warning`: flag npuMemSize -1 for ms in general (when the model's yaml is not read to decide)."""
    problems: list[Problem] = []
    backend, deploy = _section(data, B), _section(data, B, "ModelDeployConfig")
    schedule, server = _section(data, B, "ScheduleConfig"), _section(data, S)
    models = deploy.get("ModelConfig") if isinstance(deploy.get("ModelConfig"), list) else []
    first = models[0] if models and isinstance(models[0], dict) else {}
    problems += _device_checks(backend, first)
    if schedule.get("templateType", "Standard") == "Standard" and len(models) != 1:
        problems.append(Problem(f"{MDC}.ModelConfig", f"has {len(models)} elements: there should be one "
                                "modelParam for Standard templateType"))
    problems += _length_checks(deploy, schedule, first)
    problems += _port_checks(server, backend)
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


def _length_checks(deploy: dict[str, Any], schedule: dict[str, Any], first: dict[str, Any]) -> list[Problem]:
    problems = []
    max_seq, max_input = _int(deploy.get("maxSeqLen")), _int(deploy.get("maxInputTokenLen"))
    prefill_tokens = _int(schedule.get("maxPrefillTokens"))
    batch, prefill_batch = _int(schedule.get("maxBatchSize")), _int(schedule.get("maxPrefillBatchSize"))
    preempt, iters = _int(schedule.get("maxPreemptCount")), _int(schedule.get("maxIterTimes"))
    if prefill_tokens is not None and max_input is not None and schedule.get("templateType") != "Mix" \
            and prefill_tokens < max_input:
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
    infer_port = _int(backend.get("multiNodesInferPort"))
    if port is not None and infer_port == port:
        problems.append(Problem(f"{B}.multiNodesInferPort", f"{infer_port}: Endpoint port cannot be equal to "
                                "multiNodesInferPort"))
    for key in ("ipAddress", "managementIpAddress"):
        if server.get(key) == "0.0.0.0" and server.get("allowAllZeroIpListening") is not True:
            problems.append(Problem(f"{S}.{key}", "0.0.0.0 needs ServerConfig.allowAllZeroIpListening true"))
        if key in server and server.get(key) == "":
            problems.append(Problem(f"{S}.{key}", "Input ipAddress is empty"))
    return problems
