"""The MindIE container for `deploy --docker`: the docker SDK arguments and the equivalent `docker run`."""

from __future__ import annotations

import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

CONTROL_DEVICES = ("/dev/davinci_manager", "/dev/devmm_svm", "/dev/hisi_hdc")
DRIVER_MOUNTS = (  # (host path, read-only) as in the MindIE image guide and quick start
    "/usr/local/Ascend/driver", "/usr/local/Ascend/firmware", "/usr/local/dcmi", "/usr/local/bin/npu-smi",
    "/usr/local/sbin", "/etc/ascend_install.info",
)
MIN_SHM_BYTES = 1 << 30


@dataclass
class ContainerSpec:
    image: str
    name: str
    command: list[str]
    devices: list[str]
    volumes: dict[str, dict[str, str]]
    environment: dict[str, str]
    shm_size: str = "1g"
    network_mode: str = "host"
    working_dir: str = "/tmp"
    extra: dict[str, str] = field(default_factory=dict)

    def sdk_kwargs(self) -> dict[str, object]:
        return {"image": self.image, "name": self.name, "command": self.command, "devices": self.devices,
                "volumes": self.volumes, "environment": self.environment, "shm_size": self.shm_size,
                "network_mode": self.network_mode, "working_dir": self.working_dir, "detach": True}

    def docker_run_command(self) -> str:
        parts = ["docker", "run", "-d", "--name", self.name, f"--net={self.network_mode}",
                 f"--shm-size={self.shm_size}", "-w", self.working_dir]
        parts += [f"--device={d}" for d in self.devices]
        for host, bind in self.volumes.items():
            parts += ["-v", f"{host}:{bind['bind']}:{bind['mode']}"]
        for key, value in sorted(self.environment.items()):
            parts += ["-e", f"{key}={value}"]
        parts += [self.image, *self.command]
        return " ".join(shlex.quote(p) for p in parts)


CONTAINER_SET_ENV = ("/usr/local/Ascend/ascend-toolkit/set_env.sh", "/usr/local/Ascend/nnal/atb/set_env.sh",
                     "/usr/local/Ascend/mindie/set_env.sh")
CONTAINER_DAEMON = "/usr/local/Ascend/mindie/latest/mindie-service/bin/mindieservice_daemon"


def container_command(deployment_dir: Path) -> list[str]:
    """The image's own set_env.sh scripts (its paths, not the host's), then the daemon from a writable folder."""
    sources = " && ".join(f"source {s}" for s in CONTAINER_SET_ENV)
    return ["bash", "-c", f"{sources} && cd {shlex.quote(str(deployment_dir))} && exec {CONTAINER_DAEMON}"]


def container_spec(*, image: str, name: str, devices: Sequence[int], model_dir: Path, config_path: Path,
                   environment: Mapping[str, str], deployment_dir: Path, shm_size: str = "1g") -> ContainerSpec:
    volumes: dict[str, dict[str, str]] = {path: {"bind": path, "mode": "ro"} for path in DRIVER_MOUNTS}
    volumes[str(model_dir)] = {"bind": str(model_dir), "mode": "ro"}
    volumes[str(config_path)] = {"bind": str(config_path), "mode": "ro"}
    volumes[str(deployment_dir)] = {"bind": str(deployment_dir), "mode": "rw"}  # writable cwd for kernel_meta
    env = dict(environment)
    env["MIES_CONFIG_JSON_PATH"] = str(config_path)
    device_paths = [f"/dev/davinci{d}:/dev/davinci{d}:rwm" for d in devices]
    device_paths += [f"{d}:{d}:rwm" for d in CONTROL_DEVICES]
    return ContainerSpec(image=image, name=name, command=container_command(deployment_dir),
                         devices=device_paths, volumes=volumes,
                         environment=env, shm_size=shm_size, working_dir=str(deployment_dir))
