"""The environment the daemon needs: the real set_env.sh scripts sourced in order in a bash subshell (never
re-implemented), plus the MindSpore backend's own variables."""

from __future__ import annotations

import os
import shlex
import socket
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from mindie_pack.env.discovery import Installation, discover, set_env_scripts
from mindie_pack.errors import PackError

DEFAULT_MS_SCHED_PORT = 8119  # run_mindie.sh's choice; taken only when free
DEFAULT_LCAL_IF_PORT = 8129


@dataclass
class DaemonEnv:
    env: dict[str, str]
    sourced: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    added: dict[str, str] = field(default_factory=dict)  # what differs from the base environment

    def export_lines(self) -> list[str]:
        return [f"export {key}={shlex.quote(value)}" for key, value in sorted(self.added.items())]


def port_is_free(port: int, host: str = "0.0.0.0") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(preferred: int | None = None, host: str = "127.0.0.1") -> int:
    if preferred and port_is_free(preferred, host):
        return preferred
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _ms_filtered_copy(script: Path, folder: Path) -> Path:
    # atb-models/set_env.sh resolves torch/torch_npu (PYTORCH_* lines); the ms backend has neither. The llm_boost
    # guide comments those lines out with sed; we feed bash a filtered copy and leave the user's file alone.
    kept = [line for line in script.read_text().splitlines() if "PYTORCH" not in line]
    copy = folder / "atb-models-set_env.sh"
    copy.write_text("\n".join(kept) + "\n")
    return copy


def source_scripts(scripts: Sequence[Path], base_env: Mapping[str, str], *, backend: str = "ms") -> dict[str, str]:
    with tempfile.TemporaryDirectory(prefix="mindie-pack-env-") as tmp:
        lines = ["set -e"]
        for script in scripts:
            target = _ms_filtered_copy(script, Path(tmp)) if backend == "ms" and script.parent.name == "atb-models" \
                else script
            # Scripts look up their own folder through ${BASH_SOURCE[0]}: cd there while sourcing.
            lines.append(f"cd {shlex.quote(str(script.parent))} && source {shlex.quote(str(target))}")
        lines.append("env -0")
        proc = subprocess.run(["bash", "-c", "\n".join(lines)], env=dict(base_env), capture_output=True,
                              timeout=120, cwd=tmp)
    if proc.returncode != 0:
        raise PackError(f"sourcing {', '.join(str(s) for s in scripts)} failed (exit {proc.returncode}): "
                        f"{proc.stderr.decode(errors='replace').strip()[-300:]}")
    env: dict[str, str] = {}
    for entry in proc.stdout.split(b"\0"):
        if b"=" in entry:
            key, value = entry.split(b"=", 1)
            env[key.decode()] = value.decode(errors="replace")
    for noise in ("PWD", "OLDPWD", "SHLVL", "_"):
        env.pop(noise, None)
        if noise in base_env:
            env[noise] = base_env[noise]
    return env


def daemon_environment(*, ascend_root: Path | None = None, mindie_home: Path | None = None,
                       profile: str = "mf-ckpt", mindformers_src: Path | None = None,
                       devices: Sequence[int] | None = None, base_env: Mapping[str, str] | None = None,
                       installation: Installation | None = None, ms_sched_port: int | None = None) -> DaemonEnv:
    base = dict(os.environ if base_env is None else base_env)
    inst = installation or discover(ascend_root=ascend_root, mindie_home=mindie_home, environ=base)
    scripts = set_env_scripts(inst)
    present = [s for s in scripts if s.is_file()]
    missing = [str(s) for s in scripts if not s.is_file()]
    env = source_scripts(present, base) if present else dict(base)
    env["MINDIE_LLM_FRAMEWORK_BACKEND"] = "MS"
    env["MS_SCHED_HOST"] = env.get("MS_SCHED_HOST") or "127.0.0.1"
    env["MS_SCHED_PORT"] = str(ms_sched_port or free_port(DEFAULT_MS_SCHED_PORT))
    env["LCAL_IF_PORT"] = str(free_port(DEFAULT_LCAL_IF_PORT))
    if inst.mindie_service is not None:
        env["MIES_INSTALL_PATH"] = str(inst.mindie_service)
    if profile == "llm-boost":
        env["ENFORCE_EAGER"] = "True"
    if mindformers_src is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(mindformers_src), env.get("PYTHONPATH")]))
    if devices:
        env["ASCEND_RT_VISIBLE_DEVICES"] = ",".join(str(d) for d in devices)
    env.pop("RANK_TABLE_FILE", None)  # single node: the model library may read it (reference §4.3)
    added = {k: v for k, v in env.items() if base.get(k) != v}
    return DaemonEnv(env, [str(s) for s in present], missing, added)
