"""`mindie-pack doctor`: every environment pitfall of the runbooks as a check with a status and a fix."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from mindie_pack.env.compat import compat_mismatches, row_for
from mindie_pack.env.discovery import Installation, discover
from mindie_pack.env.environment import daemon_environment, port_is_free
from mindie_pack.env.npu import query_npus
from mindie_pack.errors import PackError


@dataclass
class Check:
    name: str
    status: str  # ok | warn | fail
    detail: str
    fix: str = ""
    blocking: bool = False  # deploy refuses to start on a failing blocking check

    def to_dict(self) -> dict[str, object]:
        return asdict(self)


def component_checks(inst: Installation) -> list[Check]:
    checks = []
    fixes = {"driver": "install the Ascend driver and firmware", "cann-toolkit": "install Ascend-cann-toolkit",
             "cann-kernels": "install the Ascend-cann-kernels package for this NPU",
             "nnal-atb": "install Ascend-cann-nnal (ATB)", "atb-models": "install the MindIE atb-models package",
             "mindie": "install MindIE (or pass --mindie-home / --ascend-root)"}
    for name, component in inst.components.items():
        if component.found:
            checks.append(Check(f"component {name}", "ok", f"{component.version or 'version unknown'} at "
                                f"{component.path}"))
        else:
            checks.append(Check(f"component {name}", "fail", component.detail, fixes.get(name, ""),
                                blocking=name in ("cann-toolkit", "mindie")))
    for package in ("mindspore", "mindformers"):
        version = inst.packages.get(package)
        checks.append(Check(f"python {package}", "ok" if version else "fail", version or "not installed",
                            "" if version else f"pip install {package} (the version the matrix pairs with MindIE)",
                            blocking=False))
    return checks


def compat_checks(inst: Installation) -> list[Check]:
    mindie = inst.version("mindie")
    row = row_for(mindie)
    if mindie is None:
        return [Check("versions", "warn", "MindIE version unknown: compatibility not checked")]
    if row is None:
        return [Check("versions", "warn", f"MindIE {mindie} is not in the compatibility matrix")]
    found = {"cann": inst.version("cann-toolkit"), "mindspore": inst.packages.get("mindspore"),
             "mindformers": inst.packages.get("mindformers"), "python": f"{sys.version_info[0]}.{sys.version_info[1]}"}
    mismatches = compat_mismatches(mindie, found)
    if not mismatches:
        return [Check("versions", "ok", f"MindIE {mindie}: CANN {found['cann']}, MindSpore {found['mindspore']}, "
                      f"MindFormers {found['mindformers']}, Python {found['python']} match")]
    return [Check(f"version {m.component}", "fail" if m.confirmed else "warn",
                  f"MindIE {mindie} pairs with {m.component} {m.expected}, found {m.found or 'none'}",
                  f"install {m.component} {m.expected}") for m in mismatches]


def env_checks(inst: Installation, profile: str) -> list[Check]:
    try:
        daemon_env = daemon_environment(installation=inst, profile=profile)
    except PackError as exc:
        return [Check("environment", "fail", str(exc), "fix the set_env.sh script named above", blocking=True)]
    checks = []
    if daemon_env.missing:
        checks.append(Check("environment scripts", "fail", "missing: " + ", ".join(daemon_env.missing),
                            "install the components above", blocking=False))
    wanted = ("ASCEND_HOME_PATH", "ASCEND_TOOLKIT_HOME", "MIES_INSTALL_PATH", "MINDIE_LLM_FRAMEWORK_BACKEND")
    absent = [k for k in wanted if not daemon_env.env.get(k)]
    if absent:
        checks.append(Check("environment", "fail", "not set after sourcing: " + ", ".join(absent),
                            "source the CANN and MindIE set_env.sh scripts (mindie-pack env --shell)"))
    else:
        checks.append(Check("environment", "ok", f"sourced {len(daemon_env.sourced)} script(s); ASCEND_HOME_PATH="
                            f"{daemon_env.env['ASCEND_HOME_PATH']}"))
    current = os.environ.get("MINDIE_LLM_FRAMEWORK_BACKEND")
    if current and current.upper() != "MS":
        checks.append(Check("backend variable", "warn", f"this shell has MINDIE_LLM_FRAMEWORK_BACKEND={current}",
                            "export MINDIE_LLM_FRAMEWORK_BACKEND=MS (deploy sets it for the daemon)"))
    return checks


def npu_checks(inst: Installation, world_size: int | None) -> list[Check]:
    if inst.npu_smi is None:
        return [Check("npu-smi", "fail", "npu-smi not found (no Ascend driver on this machine?)",
                      "install the driver; on machines without NPUs use `mindie-pack emulator install`",
                      blocking=True)]
    try:
        report = query_npus(inst.npu_smi)
    except PackError as exc:
        return [Check("npu-smi", "fail", str(exc), "check the driver (npu-smi info)", blocking=True)]
    checks = [Check("npu-smi", "ok", f"{len(report.chips)} NPU(s) via {inst.npu_smi}")]
    unhealthy = [c for c in report.chips if c.health.upper() != "OK"]
    if unhealthy:
        checks.append(Check("NPU health", "fail", ", ".join(f"NPU {c.npu}: {c.health}" for c in unhealthy),
                            "npu-smi info -t health -i <id>; reset or replace the card", blocking=True))
    else:
        checks.append(Check("NPU health", "ok", f"all {len(report.chips)} OK"))
    if report.processes:
        holders = ", ".join(f"NPU {p.npu}: pid {p.pid} ({p.name}, {p.memory_mb} MB)" for p in report.processes)
        checks.append(Check("NPU memory", "warn", f"still held: {holders}",
                            "kill " + " ".join(str(p.pid) for p in report.processes) + " if they are leftovers"))
    else:
        checks.append(Check("NPU memory", "ok", "no process holds NPU memory"))
    if world_size is not None:
        healthy = len(report.chips) - len(unhealthy)
        ok = healthy >= world_size
        checks.append(Check("NPUs for worldSize", "ok" if ok else "fail",
                            f"{healthy} healthy NPU(s), worldSize {world_size}",
                            "" if ok else "lower worldSize (rebuild with --tp) or add NPUs", blocking=not ok))
    return checks


def host_checks(ports: Sequence[int], working_dir: Path) -> list[Check]:
    checks = []
    busy = [p for p in ports if not port_is_free(p)]
    checks.append(Check("ports", "fail" if busy else "ok",
                        f"in use: {', '.join(map(str, busy))}" if busy else
                        (f"free: {', '.join(map(str, ports))}" if ports else "no ports to check"),
                        "stop what listens there (ss -ltnp) or choose other ports" if busy else "",
                        blocking=bool(busy)))
    shm = Path("/dev/shm")
    if shm.is_dir():
        total = shutil.disk_usage(shm).total
        leftovers = sorted(p.name for p in shm.glob("*llm_backend_*")) + \
            sorted(p.name for p in shm.glob("llm_tokenizer_shared_memory_*"))
        checks.append(Check("/dev/shm", "ok" if total >= 1 << 30 else "warn", f"{total / (1 << 30):.1f} GiB",
                            "" if total >= 1 << 30 else "docker run --shm-size=1g (or more)"))
        if leftovers:
            checks.append(Check("/dev/shm leftovers", "warn", f"{len(leftovers)} file(s) from an earlier MindIE run "
                                f"(e.g. {leftovers[0]})", "rm -f /dev/shm/*llm_backend_* "
                                "/dev/shm/llm_tokenizer_shared_memory_*"))
    checks.append(Check("working directory", "ok" if os.access(working_dir, os.W_OK) else "fail",
                        f"{working_dir} {'is' if os.access(working_dir, os.W_OK) else 'is not'} writable "
                        "(CANN writes kernel_meta there)", "" if os.access(working_dir, os.W_OK) else
                        "run from a writable folder, e.g. the mindie-service folder", blocking=True))
    return checks


def library_checks(packages: dict[str, str | None]) -> list[Check]:
    checks = []
    numpy_version = packages.get("numpy")
    if packages.get("mindspore") and numpy_version and int(numpy_version.split(".")[0]) >= 2:
        checks.append(Check("numpy", "fail", f"numpy {numpy_version} with MindSpore {packages['mindspore']}: "
                            "MindSpore is built against the NumPy 1.x ABI (bfloat16 tensors fail)",
                            "pip install 'numpy<2'"))
    torch_libs = None
    try:
        import importlib.util

        spec = importlib.util.find_spec("torch")
        if spec and spec.origin:
            torch_libs = Path(spec.origin).parent.parent / "torch.libs"
    except (ImportError, ValueError):
        torch_libs = None
    gomp = sorted(torch_libs.glob("libgomp*.so*")) if torch_libs and torch_libs.is_dir() else []
    if gomp and platform.machine() == "aarch64":
        checks.append(Check("libgomp static TLS", "warn", f"torch bundles {gomp[0].name}: 'cannot allocate memory "
                            "in static TLS block' on aarch64", f"export LD_PRELOAD={gomp[0]}:$LD_PRELOAD"))
    else:
        checks.append(Check("libgomp static TLS", "ok", "no bundled libgomp at risk on " + platform.machine()))
    return checks


def file_checks(config_path: Path | None, model_dir: Path | None) -> list[Check]:
    from mindie_pack.config.files import config_file_problems, model_dir_problems

    checks = []
    if config_path is not None:
        problems = config_file_problems(config_path)
        checks.append(Check("config.json file", "fail" if problems else "ok",
                            "; ".join(p.message for p in problems) or f"{config_path}: regular file, mode <= 0640, "
                            "owned by you", blocking=bool(problems)))
    if model_dir is not None:
        problems = model_dir_problems({"modelWeightPath": str(model_dir.absolute()), "backendType": "ms"}, 0)
        checks.append(Check("model directory", "fail" if problems else "ok",
                            "; ".join(p.message for p in problems) or f"{model_dir}: mode <= 0750, config.json and "
                            "one yaml", blocking=bool(problems)))
    return checks


def run_doctor(*, ascend_root: Path | None = None, mindie_home: Path | None = None, config_path: Path | None = None,
               model_dir: Path | None = None, world_size: int | None = None, ports: Sequence[int] = (),
               profile: str = "mf-ckpt", working_dir: Path | None = None, backend: str | None = None,
               mindie_python: Path | None = None) -> list[Check]:
    if backend in ("atb", "torch") or mindie_python is not None or profile in ("atb", "torch"):
        return _run_atb_doctor(ascend_root=ascend_root, mindie_home=mindie_home, config_path=config_path,
                               model_dir=model_dir, world_size=world_size, ports=ports, working_dir=working_dir,
                               mindie_python=mindie_python)
    inst = discover(ascend_root=ascend_root, mindie_home=mindie_home)
    checks = component_checks(inst) + compat_checks(inst)
    if inst.components["cann-toolkit"].found or inst.components["mindie"].found:
        checks += env_checks(inst, profile)
    checks += npu_checks(inst, world_size)
    checks += host_checks(ports, working_dir or Path.cwd())
    checks += library_checks(inst.packages)
    checks += file_checks(config_path, model_dir)
    return checks


def _run_atb_doctor(*, ascend_root: Path | None, mindie_home: Path | None, config_path: Path | None,
                    model_dir: Path | None, world_size: int | None, ports: Sequence[int], working_dir: Path | None,
                    mindie_python: Path | None) -> list[Check]:
    """The atb / torch backends (MindIE <= 2.3 tree or a 3.0 mindie_llm environment): env/atb_doctor.py."""
    from mindie_pack.deploy.installed import ascend_root_for
    from mindie_pack.env.atb_doctor import atb_doctor
    from mindie_pack.env.mindie_llm import discover_mindie_llm, python_of

    python = mindie_python or (python_of(mindie_home) if mindie_home else None)
    llm = discover_mindie_llm(python) if python else None
    root = ascend_root or (ascend_root_for(llm) if llm else None)
    inst = discover(ascend_root=root, mindie_home=None if llm else mindie_home)
    skipped = {"python mindspore", "python mindformers"} | ({"component mindie", "component atb-models"} if llm
                                                            else set())
    checks = [c for c in component_checks(inst) if c.name not in skipped]
    checks += atb_doctor(inst, llm=llm, model_dir=model_dir, world_size=world_size)
    checks += npu_checks(inst, world_size)
    checks += host_checks(ports, working_dir or Path.cwd())
    checks += file_checks(config_path, None)
    return checks
