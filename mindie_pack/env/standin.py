"""Stand-in Ascend install trees for machines without NPUs (the tests, and `mindie-pack emulator install`).

They reproduce what mindie-pack observes of the real software: the folder layout, version files, set_env.sh
scripts that export variables the way the real ones do, and `npu-smi` / `hccn_tool` executables printing the
real output formats. The NPU state they report comes from a JSON file (`.standin/npu-state.json`) that tests
edit to make chips unhealthy or busy.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MARKER = ".mindie-pack-standin"


@dataclass(frozen=True)
class StandinVersions:
    driver: str = "24.1.rc3"
    cann: str = "8.0.RC3"
    mindie: str = "1.0.RC3"


@dataclass
class StandinRoot:
    root: Path
    versions: StandinVersions
    state_path: Path
    tools_dir: Path
    mindie_service: Path
    extra: dict[str, Any] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        return json.loads(self.state_path.read_text())

    def set_state(self, state: dict[str, Any]) -> None:
        self.state_path.write_text(json.dumps(state, indent=2))


def _write(path: Path, text: str, mode: int = 0o644) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)
    return path


def default_npu_state(npu_count: int, health: str = "OK", chip: str | None = None) -> dict[str, Any]:
    return {
        "chips": [{"id": i, "name": chip or "910B3", "health": health, "hbm_used": 3161, "hbm_total": 65536,
                   "bus_id": f"0000:{0xC1 + i:02X}:00.0"} for i in range(npu_count)],
        "processes": [],  # {"npu": 0, "pid": 1234, "name": "python3", "memory": 30000}
        "device_ips": {str(i): f"192.168.100.{101 + i}" for i in range(npu_count)},
    }


NPU_SMI = r'''#!{python}
"""Stand-in npu-smi (mindie-pack): prints `npu-smi info`, `info -l`, `info -m` in the real formats."""
import json, sys
state = json.load(open({state!r}))
args = sys.argv[1:]
if args[:1] != ["info"]:
    print("Usage: npu-smi info [-l | -m | -t TYPE -i ID]", file=sys.stderr); sys.exit(1)
chips = state["chips"]
if args[1:2] == ["-l"]:
    print(f"\tTotal Count                    : {{len(chips)}}\n")
    for c in chips:
        print(f"\tNPU ID                         : {{c['id']}}\n\tProduct Name                   : IT21DMDA\n")
    sys.exit(0)
if args[1:2] == ["-m"]:
    print("\tNPU ID                         Chip ID                        Chip Logic ID                  Chip Name")
    for c in chips:
        print(f"\t{{c['id']:<31}}0{{'':<30}}{{c['id']:<31}}Ascend {{c['name']}}")
        print(f"\t{{c['id']:<31}}1{{'':<30}}{{'-':<31}}Mcu")
    sys.exit(0)
line = "+" + "-" * 27 + "+" + "-" * 15 + "+" + "-" * 52 + "+"
eq = "+" + "=" * 27 + "+" + "=" * 15 + "+" + "=" * 52 + "+"
print("+" + "-" * 96 + "+")
print(f"| npu-smi {version:<24}Version: {version:<54}|")
print(line)
print("| NPU   Name                | Health        | Power(W)    Temp(C)           Hugepages-Usage(page)|")
print("| Chip                      | Bus-Id        | AICore(%)   Memory-Usage(MB)  HBM-Usage(MB)        |")
print(eq)
for c in chips:
    name = str(c['id']) + '     ' + c['name']
    print(f"| {{name:<26}}| {{c['health']:<14}}| {{'95.7':<12}}{{'36':<18}}{{'0    / 0':<21}} |")
    hbm = f"{{c['hbm_used']}} / {{c['hbm_total']}}"
    print(f"| {{'0':<26}}| {{c['bus_id']:<14}}| {{'0':<12}}{{'0    / 0':<18}}{{hbm:<21}} |")
    print(eq)
print(line)
print("| NPU     Chip              | Process id    | Process name             | Process memory(MB)      |")
print(eq)
for c in chips:
    procs = [p for p in state["processes"] if p["npu"] == c["id"]]
    if not procs:
        print(f"| {{'No running processes found in NPU ' + str(c['id']):<95}}|")
    for p in procs:
        print(f"| {{str(c['id']) + '       0':<26}}| {{p['pid']:<14}}| {{p['name']:<25}}| {{p['memory']:<24}}|")
    print(eq)
'''

HCCN_TOOL = r'''#!{python}
"""Stand-in hccn_tool (mindie-pack): `hccn_tool -i N -ip -g` prints the device NIC address."""
import json, sys
state = json.load(open({state!r}))
args = sys.argv[1:]
if len(args) == 4 and args[0] == "-i" and args[2:] == ["-ip", "-g"]:
    ip = state["device_ips"].get(args[1])
    if ip is None:
        print(f"Device {{args[1]}} not found", file=sys.stderr); sys.exit(255)
    print(f"ipaddr:{{ip}}\nnetmask:255.255.255.0")
    sys.exit(0)
print("Usage: hccn_tool -i <device_id> -ip -g", file=sys.stderr); sys.exit(1)
'''


def write_standin_ascend_root(root: Path, *, versions: StandinVersions | None = None, npu_count: int = 8,
                              npu_health: str = "OK", include: set[str] | None = None,
                              chip: str | None = None) -> StandinRoot:
    """Write driver, CANN toolkit (+kernels), NNAL/ATB, atb-models, MindIE and the NPU tools under `root`.

    `include` limits the components (driver, toolkit, nnal, atb-models, mindie) to test missing ones.
    """
    v = versions or StandinVersions()
    parts = include or {"driver", "toolkit", "nnal", "atb-models", "mindie"}
    root.mkdir(parents=True, exist_ok=True)
    _write(root / MARKER, "Stand-in Ascend install written by mindie-pack (no NPU software here).\n")
    state_path = root / ".standin" / "npu-state.json"
    _write(state_path, json.dumps(default_npu_state(npu_count, npu_health, chip), indent=2))
    tools = root / "driver" / "tools"
    if "driver" in parts:
        _write(root / "driver/version.info", f"Version={v.driver}\nascendhal_version=7.35.23\naicpu_version=1.0\n"
               "tdt_version=1.0\nlog_version=1.0\nprof_version=2.0\ndvppkernels_version=1.1\n"
               "tsfw_version=1.0\nInnerversion=V100R001C19SPC002B227\ncompatible_version=[V100R001C15],"
               "[V100R001C17],[V100R001C18],[V100R001C19]\n")
        python = sys.executable
        _write(tools / "npu-smi", NPU_SMI.format(python=python, state=str(state_path), version=v.driver), 0o755)
        _write(tools / "hccn_tool", HCCN_TOOL.format(python=python, state=str(state_path)), 0o755)
    if "toolkit" in parts:
        home = root / "ascend-toolkit" / v.cann
        _write(home / "x86_64-linux/ascend_toolkit_install.info",
               f"package_name=Ascend-cann-toolkit\nversion={v.cann}\ninnerversion=V100R001C19SPC001B133\n"
               "arch=x86_64\nos=linux\npath=" + str(home / "x86_64-linux") + "\n")
        _write(home / "opp/version.info", f"Version={v.cann}\n")  # kernels (opp) package
        (home / "lib64").mkdir(parents=True, exist_ok=True)
        latest = root / "ascend-toolkit/latest"
        if not latest.exists():
            latest.symlink_to(v.cann)
        _write(root / "ascend-toolkit/set_env.sh", f'''# Stand-in of CANN's ascend-toolkit/set_env.sh
export LD_LIBRARY_PATH={root}/driver/lib64:{root}/driver/lib64/common:{root}/driver/lib64/driver:$LD_LIBRARY_PATH
export ASCEND_TOOLKIT_HOME={latest}
export LD_LIBRARY_PATH=${{ASCEND_TOOLKIT_HOME}}/lib64:${{ASCEND_TOOLKIT_HOME}}/lib64/plugin/opskernel:$LD_LIBRARY_PATH
export PYTHONPATH=${{ASCEND_TOOLKIT_HOME}}/python/site-packages:${{ASCEND_TOOLKIT_HOME}}/opp/built-in/op_impl/ai_core/tbe:$PYTHONPATH
export PATH=${{ASCEND_TOOLKIT_HOME}}/bin:${{ASCEND_TOOLKIT_HOME}}/compiler/ccec_compiler/bin:$PATH
export ASCEND_AICPU_PATH=${{ASCEND_TOOLKIT_HOME}}
export ASCEND_OPP_PATH=${{ASCEND_TOOLKIT_HOME}}/opp
export TOOLCHAIN_HOME=${{ASCEND_TOOLKIT_HOME}}/toolkit
export ASCEND_HOME_PATH=${{ASCEND_TOOLKIT_HOME}}
''')
    if "nnal" in parts:
        atb = root / "nnal/atb"
        _write(atb / "latest/version.info", f"Ascend-cann-atb : {v.cann}\nAscend-cann-atb Version : {v.cann}\n")
        _write(atb / "set_env.sh", f'''# Stand-in of nnal/atb/set_env.sh
export ATB_HOME_PATH={atb}/latest/atb/cxx_abi_0
export LD_LIBRARY_PATH=${{ATB_HOME_PATH}}/lib:${{ATB_HOME_PATH}}/examples:${{ATB_HOME_PATH}}/tests/atbopstest:$LD_LIBRARY_PATH
export PATH=${{ATB_HOME_PATH}}/bin:$PATH
export ATB_STREAM_SYNC_EVERY_KERNEL_ENABLE=0
export ATB_OPSRUNNER_SETUP_CACHE_ENABLE=1
export ATB_OPERATION_EXECUTE_ASYNC=1
export ATB_COMPARE_TILING_EVERY_KERNEL=0
export ATB_WORKSPACE_MEM_ALLOC_GLOBAL=0
''')
    if "atb-models" in parts:
        models = root / "atb-models"
        _write(models / "version.info", f"Version : {v.mindie}\n")
        _write(models / "set_env.sh", f'''# Stand-in of atb-models/set_env.sh (the real one resolves torch: fails without it)
export ATB_SPEED_HOME_PATH={models}
export PYTORCH_INSTALL_PATH="$(python3 -c 'import torch, os; print(os.path.dirname(os.path.abspath(torch.__file__)))')"
export PYTORCH_NPU_INSTALL_PATH="$(python3 -c 'import torch_npu, os; print(os.path.dirname(os.path.abspath(torch_npu.__file__)))')"
export LD_LIBRARY_PATH=$ATB_SPEED_HOME_PATH/lib:$PYTORCH_INSTALL_PATH/lib:$PYTORCH_NPU_INSTALL_PATH/lib:$LD_LIBRARY_PATH
export PYTHONPATH=$ATB_SPEED_HOME_PATH:$PYTHONPATH
export TASK_QUEUE_ENABLE=1
''')
    service = root / "mindie" / v.mindie / "mindie-service"
    if "mindie" in parts:
        mindie = root / "mindie"
        _write(mindie / v.mindie / "version.info", f"Ascend-mindie : MindIE {v.mindie}\nmindie-service: {v.mindie}\n"
               f"mindie-llm: {v.mindie}\nmindie-rt: {v.mindie}\n")
        latest = mindie / "latest"
        if not latest.exists():
            latest.symlink_to(v.mindie)
        _write(mindie / v.mindie / "mindie-llm/set_env.sh", f'''# Stand-in of mindie-llm/set_env.sh
export MINDIE_LLM_HOME_PATH={mindie}/latest/mindie-llm
export LD_LIBRARY_PATH=$MINDIE_LLM_HOME_PATH/lib:$LD_LIBRARY_PATH
export PYTHONPATH=$MINDIE_LLM_HOME_PATH:$PYTHONPATH
export MINDIE_LLM_RECOMPUTE_THRESHOLD=0.5
''')
        _write(service / "set_env.sh", f'''# Stand-in of mindie-service/set_env.sh
export MIES_INSTALL_PATH={mindie}/latest/mindie-service
export LD_LIBRARY_PATH=$MIES_INSTALL_PATH/lib:$MIES_INSTALL_PATH/lib/grpc:$LD_LIBRARY_PATH
export PYTHONPATH=$MIES_INSTALL_PATH/bin:$PYTHONPATH
export ATB_OPERATION_EXECUTE_ASYNC=1
export TASK_QUEUE_ENABLE=1
export HCCL_BUFFSIZE=120
''')
        _write(mindie / "set_env.sh", f'''# Stand-in of mindie/set_env.sh
source {mindie}/latest/mindie-llm/set_env.sh
source {mindie}/latest/mindie-service/set_env.sh
''')
        _write(service / "bin/mindieservice_daemon", "#!/bin/sh\necho 'stand-in MindIE install: no daemon here "
               "(use mindie-pack emulator install)' >&2\nexit 1\n", 0o755)
        for folder in ("conf", "logs", "lib"):
            (service / folder).mkdir(parents=True, exist_ok=True)
            os.chmod(service / folder, 0o750)
        os.chmod(service / "bin", stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP)
    return StandinRoot(root, v, state_path, tools, service)
