"""The deploy plan: everything `deploy` will do, computed and checked before anything starts (the preflight)."""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mindie_pack.deploy.docker_spec import ContainerSpec, container_spec
from mindie_pack.deploy.probe import Endpoints
from mindie_pack.deploy.state import state_dir
from mindie_pack.errors import PackError
from mindie_pack.spec import Spec

HOST_COMMAND_ENV = ("MIES_CONFIG_JSON_PATH", "MINDIE_LLM_FRAMEWORK_BACKEND", "MS_SCHED_HOST", "MS_SCHED_PORT",
                    "LCAL_IF_PORT", "ASCEND_RT_VISIBLE_DEVICES", "ENFORCE_EAGER", "RANK_TABLE_FILE",
                    "MIES_CONTAINER_IP", "MIES_CONTAINER_MANAGEMENT_IP", "HOST_IP", "HCCL_CONNECT_TIMEOUT",
                    "HCCL_EXEC_TIMEOUT",
                    # atb / torch (env/atb_env.py)
                    "NPU_MEMORY_FRACTION", "OMP_NUM_THREADS", "ATB_OPERATION_EXECUTE_ASYNC",
                    "ATB_WORKSPACE_MEM_ALLOC_GLOBAL", "ATB_LAYER_INTERNAL_TENSOR_REUSE",
                    "ATB_LLM_ENABLE_AUTO_TRANSPOSE",
                    "ATB_CONVERT_NCHW_TO_ND", "ATB_WORKSPACE_MEM_ALLOC_ALG_TYPE", "MASTER_ADDR", "MASTER_PORT")
# One node of a multi-node deployment: HCCL's connect window must cover every node's weight loading (GPUStack sets
# 7200 s for MindIE; reference mindie-3.0-and-atb.md §3), and no execution timeout. The user's own values win.
MULTI_NODE_ENV = {"HCCL_CONNECT_TIMEOUT": "7200", "HCCL_EXEC_TIMEOUT": "0"}
CONTAINER_ENV = ("MINDIE_LLM_FRAMEWORK_BACKEND", "MS_SCHED_HOST", "MS_SCHED_PORT", "LCAL_IF_PORT",
                 "MINDIE_LOG_TO_STDOUT", "MIES_SERVICE_MONITOR_MODE")
CONTAINER_ENV += HOST_COMMAND_ENV[HOST_COMMAND_ENV.index("NPU_MEMORY_FRACTION"):]  # atb / torch (env/atb_env.py)


@dataclass
class DeployOptions:
    model_dir: Path
    mindie_home: Path | None  # None with mindie_python (MindIE >= 3.0)
    spec: Spec | None = None
    port: int | None = None
    devices: list[int] | None = None
    timeout_s: float = 1800.0
    docker_image: str | None = None
    install_config: bool = False
    replace: bool = False
    mindie_version: str | None = None
    sets: list[str] = field(default_factory=list)
    log_stream_after_s: float = 30.0
    # one node of a multi-node deployment: the cluster's rank table and this node's address in it
    rank_table: Path | None = None
    node_ip: str | None = None
    detach: bool = False  # start and record, without waiting for readiness (a master waits for its workers)
    mindie_python: Path | None = None  # MindIE >= 3.0: the interpreter of the environment with mindie_llm
    env: list[str] = field(default_factory=list)  # NAME=VALUE over the atb defaults (env/atb_env.py)


@dataclass
class DeployPlan:
    options: DeployOptions
    config: dict[str, Any]
    mindie_version: str
    endpoints: Endpoints
    deployment_dir: Path
    config_path: Path
    daemon: Path
    environment: dict[str, str]
    world_size: int = 1
    container: ContainerSpec | None = None
    role: str | None = None  # "master" or "worker" on a multi-node deployment

    @property
    def serves(self) -> bool:
        """Whether this daemon serves the inference API (a multi-node worker does not)."""
        return self.role != "worker"
    launcher: str = "mindieservice_daemon"  # or "mindie_llm_server" (MindIE >= 3.0, deploy/launcher_llm.py)
    command: list[str] | None = None  # what the launcher runs (default: [daemon])

    @property
    def log_path(self) -> Path:
        return self.deployment_dir / "daemon.log"

    @property
    def mindie_home(self) -> Path:
        return self.daemon.parent.parent

    def host_command(self) -> str:
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.environment.items())
                           if k in HOST_COMMAND_ENV)
        program = " ".join(shlex.quote(part) for part in (self.command or [str(self.daemon)]))
        return (f"cd {shlex.quote(str(self.deployment_dir))} && env {exports} nohup {program} "
                f"> {shlex.quote(str(self.log_path))} 2>&1 &")


def plan_deploy(options: DeployOptions) -> DeployPlan:
    """Preflight: everything that can be refused is refused here, before anything starts."""
    from mindie_pack.builder.deployable import read_deployable
    from mindie_pack.config import render_config
    from mindie_pack.deploy.installed import (
        HF_PROFILES,
        atb_tree_environment,
        check_atb_tree_model,
        plan_mindie_llm,
        world_size_sets,
    )
    from mindie_pack.env import daemon_environment, discover
    from mindie_pack.env.discovery import require_given_paths

    llm_plan = plan_mindie_llm(options)  # MindIE >= 3.0 in a Python environment
    if llm_plan is not None:
        return llm_plan
    model = read_deployable(options.model_dir)
    inst = discover(mindie_home=options.mindie_home)
    require_given_paths(None, options.mindie_home, inst)
    assert inst.mindie_service is not None
    version = options.mindie_version or inst.version("mindie") or "1.0.RC3"
    sets = list(options.sets)
    if model.profile in HF_PROFILES:
        check_atb_tree_model(model, inst, version)
        sets[:0] = [f"ModelConfig[0].backendType={model.profile}", *world_size_sets(options, model)]
    role, node_env, local_devices = _node_role(options)
    if role is not None:
        ip = options.node_ip
        sets += [f"ServerConfig.ipAddress={ip}", f"ServerConfig.managementIpAddress={ip}",
                 "BackendConfig.multiNodesInferEnabled=true"]
    if options.port is not None:
        sets += [f"ServerConfig.port={options.port}", f"ServerConfig.managementPort={options.port + 1}",
                 f"ServerConfig.metricsPort={options.port + 2}"]
    config = render_config(options.spec, model_dir=model.path, mindie_version=version, sets=sets)
    endpoints = Endpoints.from_config(config)
    world = int(config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["worldSize"])
    # A multi-node daemon takes worldSize and npuDeviceIds from this node's rank-table devices (MindIE-LLM 2.3.0
    # backend_config.cpp:250-275): this server needs only those.
    refuse_blocking(options, config, inst, len(local_devices) if role is not None else world)
    deployment_dir = deployment_dir_for(endpoints.model_name)
    config_path = inst.mindie_service / "conf" / "config.json" if options.install_config \
        else deployment_dir / "config.json"
    if model.profile in HF_PROFILES:
        env = atb_tree_environment(options, inst, version, world)
    else:
        # On a multi-node server the rank table names the physical devices: ASCEND_RT_VISIBLE_DEVICES would
        # renumber them, so it is left out there.
        env = daemon_environment(ascend_root=inst.root, mindie_home=inst.mindie_service, profile=model.profile,
                                 devices=None if role is not None else options.devices, installation=inst).env
    env["MIES_CONFIG_JSON_PATH"] = str(config_path)
    env["MINDIE_LOG_TO_STDOUT"] = "1"
    env["MIES_SERVICE_MONITOR_MODE"] = "1"
    for key, value in node_env.items():
        env[key] = value if key not in MULTI_NODE_ENV else env.get(key) or value
    daemon = inst.mindie_service / "bin" / "mindieservice_daemon"
    plan = DeployPlan(options, config, version, endpoints, deployment_dir, config_path, daemon, env, world,
                      role=role)
    if options.docker_image:
        plan.container = container_spec(image=options.docker_image, name=f"mindie-{endpoints.model_name}",
                                        devices=options.devices or list(range(world)), model_dir=model.path,
                                        config_path=config_path,
                                        environment={k: env[k] for k in CONTAINER_ENV if k in env},
                                        deployment_dir=deployment_dir)
    return plan


def _node_role(options: DeployOptions) -> tuple[str | None, dict[str, str], list[str]]:
    """For one node of a multi-node deployment: its role (the master is the server holding rank 0), the
    environment MindIE reads on such a node, and the node's devices in the rank table."""
    import json

    from mindie_pack.env.ranktable import rank_table_problems

    if options.rank_table is None:
        if options.node_ip:
            raise PackError("--node-ip goes with --ranktable (the node's address in the cluster's rank table)")
        return None, {}, []
    path = options.rank_table
    try:
        table = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise PackError(f"--ranktable {path}: cannot read it as JSON ({exc})") from exc
    problems = rank_table_problems(table, multi_node=True)
    if problems:
        raise PackError(f"--ranktable {path}: {problems[0]}")
    servers = table["server_list"]
    names = ", ".join(str(s.get("container_ip") or s["server_id"]) for s in servers)
    if not options.node_ip:
        raise PackError(f"--node-ip is required with --ranktable: which of {names} this node is")
    # ranktable_config.cpp:164: the node is the server whose container_ip is MIES_CONTAINER_IP or whose server_id
    # is HOST_IP; the master holds rank_id 0 (:192-196).
    me = next((s for s in servers if options.node_ip in (s.get("container_ip"), s["server_id"])), None)
    if me is None:
        raise PackError(f"--node-ip {options.node_ip}: no server in {path} has it as container_ip or server_id "
                        f"({names})")
    role = "master" if any(str(d["rank_id"]) == "0" for d in me["device"]) else "worker"
    # MIES_CONTAINER_IP / MIES_CONTAINER_MANAGEMENT_IP also override the config's addresses (MindIE-LLM 2.3.0
    # config_manager/server_config.cpp:653,663); RANK_TABLE_FILE is read when multiNodesInferEnabled is true.
    env = {"RANK_TABLE_FILE": str(path.absolute()), "MIES_CONTAINER_IP": str(me.get("container_ip") or
                                                                           options.node_ip),
           "MIES_CONTAINER_MANAGEMENT_IP": options.node_ip, "HOST_IP": str(me["server_id"]), **MULTI_NODE_ENV}
    return role, env, [str(d["device_id"]) for d in me["device"]]


def refuse_blocking(options: DeployOptions, config: dict[str, Any], inst: Any, world: int) -> None:
    from mindie_pack.env.doctor import host_checks, npu_checks

    if options.devices is not None:
        from mindie_pack.env.devices import check_devices, host_npu_ids

        check_devices(options.devices, world_size=world, available=host_npu_ids(inst.npu_smi))

    server = config["ServerConfig"]
    ports = sorted({int(server["port"]), int(server["managementPort"]), int(server["metricsPort"])})
    blocking = [c for c in host_checks(ports, Path.cwd()) + (npu_checks(inst, world) if not options.docker_image
                else []) if c.status == "fail" and c.blocking and c.name != "working directory"]
    if blocking:
        first = blocking[0]
        raise PackError(f"preflight: {first.name}: {first.detail}" + (f" ({first.fix})" if first.fix else ""))


def deployment_dir_for(model_name: str) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")
    return state_dir() / "deployments" / f"{model_name}-{stamp}"


def write_files(plan: DeployPlan) -> None:
    """The deployment folder (0750) and its config.json (0640, backed up when it replaces one)."""
    from mindie_pack.config import write_config
    from mindie_pack.deploy.state import STATE_DIR_MODE
    from mindie_pack.fsutil import make_dirs, writing

    make_dirs(plan.deployment_dir, STATE_DIR_MODE)
    with writing(plan.config_path):
        write_config(plan.config, plan.config_path, version=plan.mindie_version)
