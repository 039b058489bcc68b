"""Which MindIE is installed, and the plan pieces that differ with it: a <= 2.3 tree (mindieservice_daemon with
MIES_CONFIG_JSON_PATH) or a >= 3.0 `mindie_llm` in a Python environment (mindie_llm_server from a writable folder,
the config in <pkg>/conf/config.json after a backup). preflight.plan_deploy calls `plan_mindie_llm` first and
`atb_plan_parts` for an atb/torch model on a 2.x tree; everything else about deploy is shared.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from mindie_pack.errors import PackError

if TYPE_CHECKING:
    from mindie_pack.builder.deployable import DeployableModel
    from mindie_pack.deploy.preflight import DeployOptions, DeployPlan
    from mindie_pack.env.discovery import Installation
    from mindie_pack.env.mindie_llm import MindieLLM

HF_PROFILES = ("atb", "torch")
MS_PROFILES = ("mf-ckpt", "mf-safetensors", "llm-boost")


def is_30(version: str | None) -> bool:
    head = (version or "").split(".")[0]
    return head.isdigit() and int(head) >= 3


def world_size_sets(options: DeployOptions, model: DeployableModel) -> list[str]:
    """An atb/torch directory has no yaml to carry its tp: worldSize and the devices come from its manifest (the
    spec's parallel.tp, when given, is what the config render uses)."""
    if options.spec is not None and options.spec.section("parallel").get("tp"):
        return []
    tp = int((model.manifest.get("options") or {}).get("tp") or 1)
    if tp == 1:
        return []
    return [f"ModelConfig[0].worldSize={tp}", f"BackendConfig.npuDeviceIds={[list(range(tp))]}"]


def find_mindie_llm(options: DeployOptions) -> MindieLLM | None:
    """A 3.0 install named by --mindie-python, or by --mindie-home pointing at a venv / the mindie_llm folder."""
    from mindie_pack.env.mindie_llm import discover_mindie_llm, python_of

    python = options.mindie_python
    if python is None and options.mindie_home is not None:
        python = python_of(options.mindie_home)
    if python is None:
        return None
    llm = discover_mindie_llm(python)
    if llm is None:
        raise PackError(f"--mindie-python {python}: mindie_llm is not installed there (pip install mindie_llm, or "
                        "pass the interpreter of the environment that has it)")
    return llm


def ascend_root_for(llm: MindieLLM) -> Path | None:
    """The Ascend root next to the environment (the emulator's layout), else None (discovery's default)."""
    for candidate in (llm.prefix.parent, llm.prefix.parent.parent):
        if (candidate / "ascend-toolkit").is_dir():
            return candidate
    return None


def model_checks(model: DeployableModel, inst: Installation, version: str, atb_types: tuple[str, ...]) -> None:
    """The atb backend's start-up refusals, as one line each (env/atb_checks.py has the sources)."""
    from mindie_pack.env.atb_checks import dtype_problem, model_type_problem, permission_problem
    from mindie_pack.env.npu import query_npus

    chips: list[str] = []
    if inst.npu_smi:
        try:
            chips = [c.name for c in query_npus(inst.npu_smi).chips]
        except PackError:
            chips = []  # reported by the npu checks
    for problem in (dtype_problem(model.path, chips), permission_problem(model.path)):
        if problem:
            raise PackError(problem)
    found = model_type_problem(model.path, atb_types, version)
    if found and found[1]:
        raise PackError(found[0])


def plan_mindie_llm(options: DeployOptions) -> DeployPlan | None:
    from mindie_pack.builder.deployable import read_deployable
    from mindie_pack.config import render_config
    from mindie_pack.deploy.preflight import DeployPlan, deployment_dir_for, refuse_blocking
    from mindie_pack.deploy.probe import Endpoints
    from mindie_pack.env import discover
    from mindie_pack.env.atb_checks import installed_types_in
    from mindie_pack.env.atb_env import atb_environment, parse_overrides

    llm = find_mindie_llm(options)
    if llm is None:
        return None
    if options.docker_image:
        raise PackError(f"--docker {options.docker_image}: not supported with a MindIE 3.0 environment yet "
                        "(--mindie-python); start it on the host, or use a <= 2.3 image with --mindie-home")
    version = options.mindie_version or llm.version or "3.0.0"
    if not is_30(version):
        raise PackError(f"{llm.package_dir}: mindie_llm {version} in a Python environment; mindie-pack starts "
                        "mindie_llm_server for MindIE 3.0 and later only (give --mindie-home of the 2.x tree)")
    for needed, line in ((llm.daemon, "45-47"), (llm.config_path.parent, "49-53"), (llm.package_dir / "lib", "58-62")):
        if not needed.exists():  # what mindie_llm_server checks first (mindie_llm/server/main.py)
            raise PackError(f"{llm.package_dir}: {needed.name} not found at {needed} (mindie_llm/server/main.py:{line} "
                            "refuses to start without it); reinstall mindie_llm")
    model = read_deployable(options.model_dir)
    if model.profile not in HF_PROFILES:
        raise PackError(f"{model.path}: built with --profile {model.profile} (backendType ms), which MindIE {version} "
                        "no longer has (removed by MindIE-LLM 2072a951): rebuild from the HF folder with "
                        "`mindie-pack build --profile atb`")
    root = ascend_root_for(llm)
    inst = discover(ascend_root=root)
    model_checks(model, inst, version, installed_types_in(llm.atb_llm_dir))
    sets = [*world_size_sets(options, model), *options.sets]
    if options.port is not None:
        sets += [f"ServerConfig.port={options.port}", f"ServerConfig.managementPort={options.port + 1}",
                 f"ServerConfig.metricsPort={options.port + 2}"]
    config = render_config(options.spec, model_dir=model.path, mindie_version=version, sets=sets,
                           backend=model.profile)
    endpoints = Endpoints.from_config(config)
    world = int(config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["worldSize"])
    refuse_blocking(options, config, inst, world)
    for needed in ("torch", "atb_llm"):  # mindie_llm/server/main.py:66-71 imports both
        if not (llm.packages.get(needed) or {}).get("path"):
            raise PackError(f"{llm.python}: {needed} is not importable there (mindie_llm_server needs it); "
                            f"install it into that environment")
    deployment_dir = deployment_dir_for(endpoints.model_name)
    env = atb_environment(root=inst.root, mindie_version=version, devices=options.devices, world_size=world,
                          overrides=parse_overrides(options.env)).env
    env.pop("MIES_CONFIG_JSON_PATH", None)  # 3.0 reads <pkg>/conf/config.json: the one we write
    env["MIES_SERVICE_MONITOR_MODE"] = "1"  # /metrics, as for the 2.x daemon (preflight.plan_deploy)
    command = llm.command()
    return DeployPlan(options, config, version, endpoints, deployment_dir, llm.config_path, Path(command[0]), env,
                      world, launcher="mindie_llm_server", command=command)


def check_atb_tree_model(model: DeployableModel, inst: Installation, version: str) -> None:
    """An atb/torch model on a <= 2.3 tree: the start-up refusals, before the config is rendered."""
    from mindie_pack.env.atb_checks import installed_types_in

    if model.profile == "torch" and not is_30(version):
        raise PackError(f"{model.path}: built with --profile torch, a backend new in MindIE 3.0 (installed: "
                        f"{version}); rebuild with --profile atb")
    model_checks(model, inst, version, installed_types_in(inst.root / "atb-models" / "atb_llm"))


def atb_tree_environment(options: DeployOptions, inst: Installation, version: str, world: int) -> dict[str, str]:
    """The atb environment on a <= 2.3 tree (no ms variables)."""
    from mindie_pack.env.atb_env import atb_environment, parse_overrides

    return atb_environment(root=inst.root, mindie_version=version, mindie_service=inst.mindie_service,
                           devices=options.devices, world_size=world, overrides=parse_overrides(options.env)).env
