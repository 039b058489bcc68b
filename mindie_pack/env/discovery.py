"""Find the Ascend components (driver, CANN, kernels, NNAL/ATB, atb-models, MindIE) and Python packages."""

from __future__ import annotations

import importlib.metadata
import os
import re
import shutil
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path

DEFAULT_ROOT = Path("/usr/local/Ascend")
PYTHON_PACKAGES = ("mindspore", "mindformers", "tokenizers", "transformers", "huggingface_hub", "torch", "numpy",
                   "torch_npu")


@dataclass
class Component:
    name: str
    found: bool
    version: str | None = None
    path: str | None = None
    detail: str = ""


@dataclass
class Installation:
    root: Path
    components: dict[str, Component] = field(default_factory=dict)
    packages: dict[str, str | None] = field(default_factory=dict)
    mindie_service: Path | None = None
    npu_smi: str | None = None
    hccn_tool: str | None = None

    def version(self, name: str) -> str | None:
        component = self.components.get(name)
        return component.version if component and component.found else None

    def to_dict(self) -> dict[str, object]:
        return {"root": str(self.root), "components": {k: asdict(v) for k, v in self.components.items()},
                "packages": self.packages, "mindie_service": str(self.mindie_service) if self.mindie_service else None,
                "npu_smi": self.npu_smi, "hccn_tool": self.hccn_tool}


_KEY_VALUE = re.compile(r"^\s*([A-Za-z][\w\- ]*?)\s*[:=]\s*(.+?)\s*$")


def read_version_file(path: Path, keys: tuple[str, ...] = ("version", "Version")) -> str | None:
    """`Version=8.0.RC3`, `version=…`, `Ascend-mindie : MindIE 2.1.RC1.B152`-style files."""
    try:
        lines = path.read_text(errors="replace").splitlines()
    except OSError:
        return None
    values = {}
    for line in lines:
        match = _KEY_VALUE.match(line)
        if match:
            values.setdefault(match.group(1), match.group(2))
    for key in keys:
        if key in values:
            return values[key].split()[-1]
    return None


def resolve_root(ascend_root: Path | None, environ: Mapping[str, str]) -> Path:
    if ascend_root is not None:
        return ascend_root
    home = environ.get("ASCEND_HOME_PATH") or environ.get("ASCEND_TOOLKIT_HOME")
    if home:  # …/Ascend/ascend-toolkit/latest
        candidate = Path(home).resolve().parent.parent
        if (candidate / "ascend-toolkit").is_dir():
            return candidate
    return DEFAULT_ROOT


def resolve_mindie_service(root: Path, mindie_home: Path | None, environ: Mapping[str, str]) -> Path | None:
    if mindie_home is not None:  # given explicitly: that one or none (never silently another install)
        candidates: list[Path | None] = [mindie_home]
    else:
        candidates = [Path(p) for p in (environ.get("MIES_INSTALL_PATH"),) if p]
        candidates += [root / "mindie" / "latest" / "mindie-service"]
    for candidate in candidates:
        if candidate is None:
            continue
        for option in (candidate, candidate / "mindie-service", candidate / "latest" / "mindie-service",
                       candidate / "mindie" / "latest" / "mindie-service"):
            if (option / "bin" / "mindieservice_daemon").exists():
                return option
    return None


def require_given_paths(ascend_root: Path | None, mindie_home: Path | None, inst: Installation, *,
                        root_flag: str = "--ascend-root", home_flag: str = "--mindie-home") -> None:
    """Paths the user named must exist and be what they claim; refused naming the flag (never ignored)."""
    from mindie_pack.errors import PackError

    if ascend_root is not None and not ascend_root.is_dir():
        raise PackError(f"{root_flag} {ascend_root}: " + ("not a directory" if ascend_root.exists()
                                                            else "no such directory"))
    if mindie_home is not None:
        if not mindie_home.exists():
            raise PackError(f"{home_flag} {mindie_home}: no such directory")
        if inst.mindie_service is None:
            raise PackError(f"{home_flag} {mindie_home}: no bin/mindieservice_daemon there (give the mindie-service "
                            "folder, or install the emulator: mindie-pack emulator install PREFIX)")


def _find_tool(name: str, root: Path, environ: Mapping[str, str]) -> str | None:
    for folder in (root / "driver" / "tools", Path("/usr/local/sbin"), Path("/usr/local/bin")):
        if (folder / name).is_file() and os.access(folder / name, os.X_OK):
            return str(folder / name)
    return shutil.which(name, path=environ.get("PATH"))


def python_packages() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PYTHON_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def discover(*, ascend_root: Path | None = None, mindie_home: Path | None = None,
             environ: Mapping[str, str] | None = None) -> Installation:
    env = os.environ if environ is None else environ
    root = resolve_root(ascend_root, env)
    service = resolve_mindie_service(root, mindie_home, env)
    if ascend_root is None and mindie_home is not None and service is not None \
            and service.resolve().parent.parent.name == "mindie":
        # A MindIE home inside an Ascend root (<root>/mindie/<ver>/mindie-service) names that root.
        root = service.resolve().parent.parent.parent
    inst = Installation(root=root)

    def add(name: str, marker: Path, version: str | None, detail: str = "") -> None:
        inst.components[name] = Component(name, marker.exists(), version if marker.exists() else None,
                                          str(marker), detail if marker.exists() else f"{marker} not found")

    add("driver", root / "driver" / "version.info", read_version_file(root / "driver" / "version.info"))
    toolkit = root / "ascend-toolkit" / "latest"
    infos = sorted(toolkit.glob("*-linux/ascend_toolkit_install.info")) if toolkit.exists() else []
    add("cann-toolkit", root / "ascend-toolkit" / "set_env.sh", read_version_file(infos[0]) if infos else None)
    add("cann-kernels", toolkit / "opp" / "version.info", read_version_file(toolkit / "opp" / "version.info"))
    atb = root / "nnal" / "atb"
    add("nnal-atb", atb / "set_env.sh",
        read_version_file(atb / "latest" / "version.info", ("Ascend-cann-atb Version", "Ascend-cann-atb", "Version")))
    add("atb-models", root / "atb-models" / "set_env.sh", read_version_file(root / "atb-models" / "version.info"))
    inst.mindie_service = service
    mindie_version = None
    if service is not None:
        mindie_version = read_version_file(service.parent / "version.info", ("mindie-service", "Ascend-mindie"))
    marker = service / "bin" / "mindieservice_daemon" if service else root / "mindie" / "latest" / "mindie-service"
    add("mindie", marker, mindie_version)
    inst.packages = python_packages()
    inst.npu_smi = _find_tool("npu-smi", root, env)
    inst.hccn_tool = _find_tool("hccn_tool", root, env)
    return inst


def set_env_scripts(inst: Installation, *, backend: str = "ms") -> list[Path]:
    """The scripts the daemon needs, in the order they must be sourced (reference §4.2)."""
    root = inst.root
    scripts = [root / "ascend-toolkit" / "set_env.sh", root / "nnal" / "atb" / "set_env.sh",
               root / "atb-models" / "set_env.sh"]
    if inst.mindie_service is not None and (inst.mindie_service.parent.parent / "set_env.sh").is_file():
        scripts.append(inst.mindie_service.parent.parent / "set_env.sh")  # mindie/set_env.sh sources llm + service
    elif inst.mindie_service is not None:
        scripts += [inst.mindie_service.parent / "mindie-llm" / "set_env.sh", inst.mindie_service / "set_env.sh"]
    else:
        scripts.append(root / "mindie" / "set_env.sh")
    return scripts
