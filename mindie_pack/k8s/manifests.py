"""Kubernetes manifests for a MindIE deployment: pure functions from a rendered config.json (+ rank table) to objects.

One server: a ConfigMap (config.json, start.sh), a Deployment and a Service for the business port.
Several servers (a multi-node rank table): the same ConfigMap plus the rank table, a headless Service, a master
StatefulSet (one pod, pinned to the rank table's first server) and a worker StatefulSet (one pod per other server),
and the business Service pointing at the master only: MindIE's multi-node master is the only node that serves the
inference API, so the two roles are two StatefulSets rather than ordinals of one (an ordinal cannot be pinned to a
node).
"""

from __future__ import annotations

import copy
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from mindie_pack.deploy.docker_spec import CONTAINER_DAEMON, CONTAINER_SET_ENV, DRIVER_MOUNTS
from mindie_pack.deploy.preflight import MULTI_NODE_ENV
from mindie_pack.errors import PackError
from mindie_pack.resources import data_dir

# Device-plugin resource names by NPU type. The Ascend device plugin (MindCluster) knows the device types Ascend910,
# Ascend310 and Ascend310P and publishes them as huawei.com/<type> (mind-cluster
# component/ascend-device-plugin/build/deviceNameCustomization.json); Atlas A2 (910B) cards are Ascend910 to it.
# Clusters whose plugin names them otherwise (HAMi: huawei.com/Ascend910B3, ...) pass --resource-name.
RESOURCE_NAMES = {"910": "huawei.com/Ascend910", "910A": "huawei.com/Ascend910", "910B": "huawei.com/Ascend910",
                  "910C": "huawei.com/Ascend910", "310P": "huawei.com/Ascend310P"}
# MindCluster's ring-controller label per NPU type (its AscendJob examples use ascend-910b for Atlas A2).
RING_CONTROLLER = {"910": "ascend-910", "910A": "ascend-910", "910B": "ascend-910b", "910C": "ascend-910b",
                   "310P": "ascend-310P"}
# MindIE >= 3.0 is the pip-installed mindie_llm package: its entry point, and no mindie-service/set_env.sh.
DAEMON_3 = "mindie_llm_server"
SET_ENV_3 = CONTAINER_SET_ENV[:2]
CONFIG_MOUNT = "/mindie-pack"
WORKDIR = "/tmp/mindie-pack-work"
# Weight loading speed assumed for the start-up window when the caller gives none: 100 MB/s per node from local
# disk or a network volume is a conservative figure for a first start (page cache cold, NPU warm-up on top).
LOAD_BYTES_PER_S = 100e6
BASE_STARTUP_S = 300
PROBE_PERIOD_S = 10
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


@dataclass
class K8sOptions:
    """What the manifests need. `config` is a rendered MindIE config.json (one ModelConfig)."""

    name: str
    image: str
    config: dict[str, Any]
    npu: str = "910B"
    namespace: str | None = None
    rank_table: dict[str, Any] | None = None
    node_names: Sequence[str] = ()
    model_pvc: str | None = None
    resource_name: str | None = None
    mindie_version: str = "2.3.0"
    model_bytes: int | None = None
    startup_window_s: int | None = None
    shm_size: str = "1Gi"
    host_ipc: bool = False
    service_type: str = "ClusterIP"
    extra_env: dict[str, str] = field(default_factory=dict)

    @property
    def multi_node(self) -> bool:
        return self.rank_table is not None and len(self.rank_table.get("server_list") or []) > 1


def _model_config(config: dict[str, Any]) -> dict[str, Any]:
    try:
        models = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"]
        model = models[0]
        model["modelWeightPath"], model["modelName"]  # noqa: B018 - both are needed below
    except (KeyError, IndexError, TypeError) as exc:
        raise PackError("config.json: BackendConfig.ModelDeployConfig.ModelConfig[0] with modelName and "
                        "modelWeightPath is required (render it with `mindie-pack config render`)") from exc
    if len(models) != 1:
        raise PackError(f"config.json: BackendConfig.ModelDeployConfig.ModelConfig has {len(models)} models; "
                        "one deployment serves one model")
    return model


def _devices_per_node(config: dict[str, Any]) -> int:
    ids = (config.get("BackendConfig") or {}).get("npuDeviceIds")
    if not (isinstance(ids, list) and len(ids) == 1 and isinstance(ids[0], list) and ids[0]):
        raise PackError("config.json: BackendConfig.npuDeviceIds must be one non-empty group, e.g. [[0,1,2,3]]")
    return len(ids[0])


def startup_window_s(options: K8sOptions) -> int:
    if options.startup_window_s is not None:
        return options.startup_window_s
    if options.model_bytes is None:
        return 1800
    return max(600, BASE_STARTUP_S + math.ceil(options.model_bytes / LOAD_BYTES_PER_S))


def check_options(options: K8sOptions) -> None:
    if not _NAME.match(options.name) or len(options.name) > 52:
        raise PackError(f"--name {options.name!r}: a Kubernetes name is lower-case letters, digits and '-', "
                        "at most 52 characters (the StatefulSet adds suffixes)")
    if options.npu not in RESOURCE_NAMES and not options.resource_name:
        raise PackError(f"--npu {options.npu!r}: expected one of {', '.join(RESOURCE_NAMES)} "
                        "(or give --resource-name)")
    if options.multi_node:
        servers = options.rank_table["server_list"]  # type: ignore[index]
        if len(options.node_names) != len(servers):
            raise PackError(f"--node-names: the rank table has {len(servers)} servers, so give {len(servers)} "
                            f"Kubernetes node names in server order (got {len(options.node_names)})")
        per_node = _devices_per_node(options.config)
        for server in servers:
            if len(server["device"]) != per_node:
                raise PackError(f"rank table: server {server['server_id']} has {len(server['device'])} devices but "
                                f"config.json npuDeviceIds has {per_node} per node")
    elif options.node_names and len(options.node_names) != 1:
        raise PackError("--node-names: one server needs at most one node name")


def node_config(options: K8sOptions) -> dict[str, Any]:
    """The config.json every pod reads: device ids renumbered as the device plugin shows them inside the container
    (0..n-1), and the multi-node switch set from the rank table."""
    config = copy.deepcopy(options.config)
    backend = config.setdefault("BackendConfig", {})
    count = _devices_per_node(config)
    backend["npuDeviceIds"] = [list(range(count))]
    backend["multiNodesInferEnabled"] = options.multi_node
    if options.multi_node:
        backend.setdefault("interNodeTLSEnabled", False)
    return config


def _labels(options: K8sOptions, role: str | None = None) -> dict[str, str]:
    labels = {"app.kubernetes.io/name": "mindie", "app.kubernetes.io/instance": options.name,
              "app.kubernetes.io/managed-by": "mindie-pack"}
    if role:
        labels["mindie-pack/role"] = role
    return labels


def _meta(options: K8sOptions, name: str, role: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": _labels(options, role)}
    if options.namespace:
        meta["namespace"] = options.namespace
    return meta


def _ports(config: dict[str, Any]) -> dict[str, int]:
    server = config.get("ServerConfig") or {}
    ports = {"business": server.get("port", 1025), "management": server.get("managementPort", 1026),
             "metrics": server.get("metricsPort", 1027)}
    if not all(isinstance(p, int) and 1024 <= p <= 65535 for p in ports.values()):
        raise PackError(f"config.json: ServerConfig ports must be integers in [1024, 65535], got {ports}")
    return ports


def _http_probe(path: str, port: int, *, period: int, failures: int, https: bool,
                timeout: int = 5) -> dict[str, Any]:
    get: dict[str, Any] = {"path": path, "port": port}
    if https:  # the kubelet does not check the certificate of an HTTPS probe
        get["scheme"] = "HTTPS"
    return {"httpGet": get, "periodSeconds": period, "timeoutSeconds": timeout, "failureThreshold": failures}


def _probes(options: K8sOptions, ports: dict[str, int], role: str) -> dict[str, Any]:
    """Probes on MindIE's management plane (MindIE-LLM 2.3.0 server/endpoint/http_wrapper/http_handler.cpp):
    /health is 503 until the engine is up and 200 after (:616-627); /v2/health/ready likewise (:581-591);
    /v2/health/live answers like /health (:567-576). Start-up gets its own window so that liveness never kills a pod
    that is still loading weights. Workers of a multi-node job run the daemon as PID 1 (the container ends with it)
    and are not probed over HTTP: only the master serves."""
    if role == "worker":
        return {}
    failures = math.ceil(startup_window_s(options) / PROBE_PERIOD_S)
    management = ports["management"]
    # With httpsEnabled the management plane speaks TLS too (MindIE-LLM 2.3.0 http_server.cpp:386).
    https = bool((options.config.get("ServerConfig") or {}).get("httpsEnabled"))
    return {
        "startupProbe": _http_probe("/health", management, period=PROBE_PERIOD_S, failures=failures, https=https),
        "readinessProbe": _http_probe("/v2/health/ready", management, period=PROBE_PERIOD_S, failures=3,
                                      https=https),
        "livenessProbe": _http_probe("/v2/health/live", management, period=30, failures=3, https=https),
    }


def _volumes(options: K8sOptions, model_path: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": "mindie-pack", "configMap": {"name": f"{options.name}-config", "defaultMode": 0o640,
                                              "items": [{"key": "config.json", "path": "config.json", "mode": 0o640},
                                                        {"key": "start.sh", "path": "start.sh", "mode": 0o750}]
                                              + ([{"key": "ranktable.json", "path": "ranktable.json", "mode": 0o640}]
                                                 if options.multi_node else [])}},
        {"name": "model", "persistentVolumeClaim": {"claimName": options.model_pvc, "readOnly": True}}
        if options.model_pvc else {"name": "model", "hostPath": {"path": model_path, "type": "Directory"}},
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": options.shm_size}},
        {"name": "work", "emptyDir": {}},
    ]
    mounts: list[dict[str, Any]] = [
        {"name": "mindie-pack", "mountPath": CONFIG_MOUNT, "readOnly": True},
        {"name": "model", "mountPath": model_path, "readOnly": True},
        {"name": "dshm", "mountPath": "/dev/shm"},
        {"name": "work", "mountPath": WORKDIR},
    ]
    host_paths = list(DRIVER_MOUNTS) + (["/etc/hccn.conf"] if options.multi_node else [])
    for index, path in enumerate(host_paths):
        kind = "Directory" if not re.search(r"(\.info|\.conf|/npu-smi)$", path) else "File"
        volumes.append({"name": f"host-{index}", "hostPath": {"path": path, "type": kind}})
        mounts.append({"name": f"host-{index}", "mountPath": path, "readOnly": True})
    return volumes, mounts


def _env(options: K8sOptions, role: str) -> list[dict[str, Any]]:
    three = options.mindie_version.startswith("3.")
    fixed = {
        "MIES_CONFIG_JSON_PATH": f"{CONFIG_MOUNT}/config.json",  # read by 2.3.0 and 3.0 (utils/common_util.cpp)
        "MIES_SERVICE_MONITOR_MODE": "1",  # /metrics answers only with it (http_wrapper/prometheus_metrics.cpp:41)
        "MINDIE_LOG_TO_STDOUT": "1",
        "MINDIE_PACK_SET_ENV": " ".join(SET_ENV_3 if three else CONTAINER_SET_ENV),
        "MINDIE_PACK_DAEMON": DAEMON_3 if three else CONTAINER_DAEMON,
        "MINDIE_PACK_WORKDIR": WORKDIR,
        "MINDIE_PACK_ROLE": role,
    }
    if options.multi_node:
        fixed |= {"RANK_TABLE_FILE": f"{CONFIG_MOUNT}/ranktable.json", **MULTI_NODE_ENV}
    fixed |= options.extra_env
    env: list[dict[str, Any]] = [{"name": k, "value": v} for k, v in fixed.items()]
    # The daemon binds the pod's address: MIES_CONTAINER_IP / MIES_CONTAINER_MANAGEMENT_IP override ipAddress and
    # managementIpAddress (MindIE-LLM 2.3.0 config_manager/server_config.cpp:653,663). With hostNetwork (multi-node)
    # the pod IP is the host IP the rank table names.
    for name in ("MIES_CONTAINER_IP", "MIES_CONTAINER_MANAGEMENT_IP"):
        env.append({"name": name, "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}})
    # A multi-node MindIE finds its rank-table server by MIES_CONTAINER_IP == container_ip or HOST_IP == server_id
    # (ranktable_config.cpp:164).
    env.append({"name": "HOST_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.hostIP"}}})
    return env


def _pod_template(options: K8sOptions, role: str, nodes: Sequence[str]) -> dict[str, Any]:
    config = options.config
    model = _model_config(config)
    ports = _ports(config)
    volumes, mounts = _volumes(options, model["modelWeightPath"])
    resource = options.resource_name or RESOURCE_NAMES[options.npu]
    count = _devices_per_node(config)
    container: dict[str, Any] = {
        "name": "mindie",
        "image": options.image,
        "command": ["bash", f"{CONFIG_MOUNT}/start.sh"],
        "env": _env(options, role),
        "ports": [{"name": "business", "containerPort": ports["business"]},
                  {"name": "management", "containerPort": ports["management"]},
                  {"name": "metrics", "containerPort": ports["metrics"]}],
        "resources": {"requests": {resource: str(count)}, "limits": {resource: str(count)}},
        "volumeMounts": mounts,
        **_probes(options, ports, role),
    }
    spec: dict[str, Any] = {"containers": [container], "volumes": volumes,
                            # /stopService drains running requests before the daemon exits; give it time.
                            "terminationGracePeriodSeconds": 120}
    if options.host_ipc:
        spec["hostIPC"] = True
    if options.multi_node:
        spec["hostNetwork"] = True
        spec["dnsPolicy"] = "ClusterFirstWithHostNet"
        spec["affinity"] = {
            "podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": {"matchLabels": {"app.kubernetes.io/instance": options.name}},
                 "topologyKey": "kubernetes.io/hostname"}]}}
    if nodes:
        spec.setdefault("affinity", {})["nodeAffinity"] = {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": list(nodes)}]}]}}
    labels = _labels(options, role)
    labels["ring-controller.atlas"] = RING_CONTROLLER.get(options.npu, "ascend-910b")
    return {"metadata": {"labels": labels}, "spec": spec}


def _start_script() -> str:
    return (data_dir("templates") / "k8s" / "start.sh").read_text()


def render_manifests(options: K8sOptions) -> list[dict[str, Any]]:
    """All objects, in the order `kubectl apply` should create them."""
    check_options(options)
    config = node_config(options)
    options = replace(options, config=config)
    ports = _ports(config)
    data = {"config.json": json.dumps(config, indent=4, ensure_ascii=False) + "\n", "start.sh": _start_script()}
    if options.multi_node:
        data["ranktable.json"] = json.dumps(options.rank_table, indent=4) + "\n"
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(options, f"{options.name}-config"), "data": data}]
    service_ports = [{"name": "business", "port": ports["business"], "targetPort": "business"}]
    if not options.multi_node:
        objects.append({
            "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(options, options.name, "master"),
            "spec": {"replicas": 1, "strategy": {"type": "Recreate"},  # the NPUs are not shared with a new pod
                     "selector": {"matchLabels": _labels(options, "master")},
                     "template": _pod_template(options, "master", options.node_names)}})
    else:
        nodes = list(options.node_names)
        headless = f"{options.name}-nodes"
        objects.append({
            "apiVersion": "v1", "kind": "Service", "metadata": _meta(options, headless),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": _labels(options),
                     "ports": [{"name": "management", "port": ports["management"]}]}})
        for role, role_nodes in (("master", nodes[:1]), ("worker", nodes[1:])):
            objects.append({
                "apiVersion": "apps/v1", "kind": "StatefulSet",
                "metadata": _meta(options, f"{options.name}-{role}", role),
                "spec": {"serviceName": headless, "replicas": len(role_nodes),
                         # every node must start inside HCCL's connect window: no ordered start
                         "podManagementPolicy": "Parallel",
                         "selector": {"matchLabels": _labels(options, role)},
                         "template": _pod_template(options, role, role_nodes)}})
    objects.append({
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(options, options.name),
        "spec": {"type": options.service_type, "selector": _labels(options, "master"), "ports": service_ports}})
    return objects
