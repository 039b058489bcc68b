"""deploy / status / stop: start mindieservice_daemon (host or container), wait until it serves, stop it.

The code talks to the daemon only through its documented contract (config file, environment, stdout lines,
HTTP endpoints, signals), so the real daemon and the emulator are the same to it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from mindie_pack.config import render_config, write_config
from mindie_pack.deploy.docker_spec import ContainerSpec, container_spec
from mindie_pack.deploy.hints import hints_for
from mindie_pack.deploy.probe import Endpoints, health_ok, models_list, one_token_ok
from mindie_pack.deploy.state import DeploymentState, clear_state, load_state, save_state, state_dir
from mindie_pack.errors import PackError
from mindie_pack.spec import Spec

SUCCESS_LINE = "Daemon start success!"
FATAL_LINES = ("Failed to init endpoint", "Failed to init engine", "[Start mindie server] [fail]")
SHM_PATTERNS = ("*llm_backend_*", "llm_tokenizer_shared_memory_*")


@dataclass
class DeployOptions:
    model_dir: Path
    mindie_home: Path
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
    container: ContainerSpec | None = None

    def host_command(self) -> str:
        import shlex

        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(self.environment.items())
                           if k in ("MIES_CONFIG_JSON_PATH", "MINDIE_LLM_FRAMEWORK_BACKEND", "MS_SCHED_HOST",
                                    "MS_SCHED_PORT", "LCAL_IF_PORT", "ASCEND_RT_VISIBLE_DEVICES", "ENFORCE_EAGER"))
        return (f"cd {shlex.quote(str(self.deployment_dir))} && env {exports} nohup {shlex.quote(str(self.daemon))} "
                f"> {shlex.quote(str(self.deployment_dir / 'daemon.log'))} 2>&1 &")


@dataclass
class Progress:
    """Callbacks for the CLI's progress display; all optional."""

    stage: Callable[[str], None] = lambda text: None
    log_line: Callable[[str], None] = lambda line: None


def process_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a zombie (exited, not yet reaped) is not alive
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def _manifest_check(model_dir: Path) -> None:
    from mindie_pack.builder.verify import VerifyReport, check_manifest

    report = VerifyReport(model_dir)
    check_manifest(model_dir, report)
    failed = [c for c in report.checks if not c.ok]
    if failed:
        raise PackError(f"{model_dir}: does not match its manifest: {failed[0].detail} (rebuild it, or `mindie-pack "
                        "verify` it)")


def _profile(model_dir: Path) -> str:
    try:
        return str(json.loads((model_dir / "manifest.json").read_text())["options"].get("profile", "mf-ckpt"))
    except (OSError, ValueError, KeyError):
        return "mf-ckpt"


def plan_deploy(options: DeployOptions) -> DeployPlan:
    """Preflight: everything that can be refused is refused here, before anything starts."""
    from mindie_pack.env import daemon_environment, discover
    from mindie_pack.env.doctor import host_checks, npu_checks

    model_dir = options.model_dir.absolute()
    if not (model_dir / "manifest.json").is_file():
        raise PackError(f"{model_dir}: no manifest.json (not a directory written by `mindie-pack build`)")
    _manifest_check(model_dir)
    inst = discover(mindie_home=options.mindie_home)
    if inst.mindie_service is None:
        raise PackError(f"--mindie-home {options.mindie_home}: no bin/mindieservice_daemon there (give the "
                        "mindie-service folder, or install the emulator: mindie-pack emulator install PREFIX)")
    version = options.mindie_version or inst.version("mindie") or "1.0.RC3"
    sets = list(options.sets)
    if options.port is not None:
        sets += [f"ServerConfig.port={options.port}", f"ServerConfig.managementPort={options.port + 1}",
                 f"ServerConfig.metricsPort={options.port + 2}"]
    config = render_config(options.spec, model_dir=model_dir, mindie_version=version, sets=sets)
    endpoints = Endpoints.from_config(config)
    server = config["ServerConfig"]
    ports = sorted({int(server["port"]), int(server["managementPort"]), int(server["metricsPort"])})
    world = int(config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["worldSize"])
    blocking = [c for c in host_checks(ports, Path.cwd()) + (npu_checks(inst, world) if not options.docker_image
                else []) if c.status == "fail" and c.blocking and c.name != "working directory"]
    if blocking:
        first = blocking[0]
        raise PackError(f"preflight: {first.name}: {first.detail}" + (f" ({first.fix})" if first.fix else ""))
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    deployment_dir = state_dir() / "deployments" / f"{endpoints.model_name}-{stamp}"
    config_path = inst.mindie_service / "conf" / "config.json" if options.install_config \
        else deployment_dir / "config.json"
    env = daemon_environment(ascend_root=inst.root, mindie_home=inst.mindie_service, profile=_profile(model_dir),
                             devices=options.devices, installation=inst).env
    env["MIES_CONFIG_JSON_PATH"] = str(config_path)
    env["MINDIE_LOG_TO_STDOUT"] = "1"
    env["MIES_SERVICE_MONITOR_MODE"] = "1"
    daemon = inst.mindie_service / "bin" / "mindieservice_daemon"
    plan = DeployPlan(options, config, version, endpoints, deployment_dir, config_path, daemon, env)
    if options.docker_image:
        ms_env = {k: env[k] for k in ("MINDIE_LLM_FRAMEWORK_BACKEND", "MS_SCHED_HOST", "MS_SCHED_PORT",
                                      "LCAL_IF_PORT", "MINDIE_LOG_TO_STDOUT", "MIES_SERVICE_MONITOR_MODE") if k in env}
        plan.container = container_spec(image=options.docker_image, name=f"mindie-{endpoints.model_name}",
                                        devices=options.devices or list(range(world)), model_dir=model_dir,
                                        config_path=config_path, environment=ms_env, deployment_dir=deployment_dir)
    return plan


def _write_files(plan: DeployPlan) -> None:
    plan.deployment_dir.mkdir(parents=True, mode=0o750)
    write_config(plan.config, plan.config_path, version=plan.mindie_version)


def _tail(path: Path, lines: int = 30) -> list[str]:
    try:
        return path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


def _kill_group(pgid: int | None, pid: int | None, grace_s: float) -> None:
    target = pgid or pid
    if not target:
        return
    try:
        os.killpg(target, signal.SIGTERM) if pgid else os.kill(target, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline and process_alive(pid):
        time.sleep(0.1)
    try:
        os.killpg(target, signal.SIGKILL) if pgid else os.kill(target, signal.SIGKILL)
    except ProcessLookupError:
        pass


def deploy(options: DeployOptions, progress: Progress | None = None) -> DeploymentState:
    progress = progress or Progress()
    previous = load_state(required=False)
    if previous is not None and (process_alive(previous.pid) or previous.container_id):
        if not options.replace:
            raise PackError(f"a deployment is running (pid {previous.pid}, {previous.business_url}, model "
                            f"{previous.model_name}): stop it first, or pass --replace")
        progress.stage("stopping the previous deployment")
        stop(timeout_s=30)
    progress.stage("preflight")
    plan = plan_deploy(options)
    _write_files(plan)
    log_path = plan.deployment_dir / "daemon.log"
    progress.stage("starting mindieservice_daemon")
    if plan.container is not None:
        state = _start_container(plan, log_path)
    else:
        with log_path.open("ab") as log:
            proc = subprocess.Popen([str(plan.daemon)], cwd=plan.deployment_dir, env=plan.environment,
                                    stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    start_new_session=True)
        state = DeploymentState(
            pid=proc.pid, pgid=proc.pid, mode="host", config_path=str(plan.config_path),
            model_dir=str(options.model_dir.absolute()), model_name=plan.endpoints.model_name, log_path=str(log_path),
            started_at=time.time(), business_url=plan.endpoints.business_url,
            management_url=plan.endpoints.management_url, metrics_url=plan.endpoints.metrics_url,
            mindie_home=str(plan.daemon.parent.parent), deployment_dir=str(plan.deployment_dir))
        save_state(state)
        try:
            _wait_ready(state, plan, options, progress, proc)
        except BaseException:
            _kill_group(state.pgid, state.pid, 5)
            proc.wait(timeout=30)
            clear_state()
            raise
    return state


def _start_container(plan: DeployPlan, log_path: Path) -> DeploymentState:
    try:
        import docker
    except ImportError as exc:  # pragma: no cover - docker is a dependency
        raise PackError("--docker needs the docker Python package") from exc
    try:
        client = docker.from_env()
        assert plan.container is not None
        container = client.containers.run(**plan.container.sdk_kwargs())
    except docker.errors.DockerException as exc:
        raise PackError(f"docker: {exc}") from exc
    state = DeploymentState(
        pid=None, pgid=None, mode="docker", config_path=str(plan.config_path), model_dir=str(plan.options.model_dir),
        model_name=plan.endpoints.model_name, log_path=str(log_path), started_at=time.time(),
        business_url=plan.endpoints.business_url, management_url=plan.endpoints.management_url,
        metrics_url=plan.endpoints.metrics_url, mindie_home=str(plan.daemon.parent.parent),
        deployment_dir=str(plan.deployment_dir), container_id=container.id)
    save_state(state)
    return state


class LogFollower:
    """The daemon log's new complete lines on each call (the file is read once, incrementally)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._partial = b""

    def new_lines(self) -> list[str]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except OSError:
            return []
        self._offset += len(data)
        *complete, self._partial = (self._partial + data).split(b"\n")
        return [line.decode(errors="replace") for line in complete]


def _serving(client: httpx.Client, endpoints: Endpoints) -> tuple[bool, str]:
    if not health_ok(client, endpoints):
        return False, "management /health is not 200 yet"
    listed = models_list(client, endpoints)
    if listed is None or endpoints.model_name not in listed:
        return False, f"/v1/models does not list {endpoints.model_name} yet"
    return one_token_ok(client, endpoints)


def _wait_ready(state: DeploymentState, plan: DeployPlan, options: DeployOptions, progress: Progress,
                proc: subprocess.Popen[bytes]) -> None:
    log_path = Path(state.log_path)
    log = LogFollower(log_path)
    started = time.monotonic()
    deadline = started + options.timeout_s
    unshown: list[str] = []
    success_seen = False
    with httpx.Client(timeout=10.0, trust_env=False) as client:
        while True:
            lines = log.new_lines()
            unshown += lines
            if time.monotonic() - started > options.log_stream_after_s:
                for line in unshown:
                    progress.log_line(line)
                unshown = []
            if proc.poll() is not None:
                raise PackError(_failure(f"the daemon exited with code {proc.returncode}", _tail(log_path),
                                         log_path))
            fatal = next((line for line in lines if any(f in line for f in FATAL_LINES)), None)
            if fatal is not None:
                raise PackError(_failure(f"the daemon reported: {fatal.strip()}", _tail(log_path), log_path))
            success_seen = success_seen or any(SUCCESS_LINE in line for line in lines)
            if success_seen:
                progress.stage("probing /health, /v1/models and a one-token request")
                ok, why = _serving(client, plan.endpoints)
                if ok:
                    return
                progress.stage(f"waiting: {why}")
            else:
                elapsed = int(time.monotonic() - started)
                progress.stage(f"waiting for '{SUCCESS_LINE}' ({elapsed} s of {int(options.timeout_s)} s)")
            if time.monotonic() > deadline:
                raise PackError(_failure(f"the service was not ready after {options.timeout_s:g} s",
                                         _tail(log_path), log_path))
            time.sleep(0.25)


def _failure(what: str, tail: list[str], log_path: Path) -> str:
    hints = hints_for(tail)
    text = f"deploy failed: {what}; log {log_path}"
    if hints:
        text += "\n  likely cause: " + "\n  likely cause: ".join(hints)
    if tail:
        text += "\n  last log lines:\n    " + "\n    ".join(tail[-15:])
    return text


@dataclass
class StatusReport:
    state: DeploymentState
    process_alive: bool
    healthy: bool
    models: list[str] | None
    uptime_s: float

    @property
    def up(self) -> bool:
        return self.process_alive and self.healthy

    def to_dict(self) -> dict[str, Any]:
        return {"up": self.up, "process_alive": self.process_alive, "healthy": self.healthy, "models": self.models,
                "uptime_s": round(self.uptime_s, 1), **self.state.to_dict()}


def status() -> StatusReport:
    state = load_state()
    assert state is not None
    endpoints = Endpoints(state.business_url, state.management_url, state.metrics_url, state.model_name)
    alive = process_alive(state.pid) if state.mode == "host" else _container_running(state.container_id)
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        healthy = alive and health_ok(client, endpoints)
        models = models_list(client, endpoints) if healthy else None
    return StatusReport(state, alive, healthy, models, time.time() - state.started_at)


def _container_running(container_id: str | None) -> bool:
    if not container_id:
        return False
    try:
        import docker

        return bool(docker.from_env().containers.get(container_id).status == "running")
    except Exception:  # noqa: BLE001 - no engine, or the container is gone
        return False


def stop(timeout_s: float = 30.0) -> dict[str, Any]:
    """/stopService, then SIGTERM to our own process group, SIGKILL after the grace period; /dev/shm cleanup."""
    state = load_state()
    assert state is not None
    graceful = False
    with httpx.Client(timeout=5.0, trust_env=False) as client:
        try:
            graceful = client.get(f"{state.management_url}/stopService").status_code == 200
        except httpx.HTTPError:
            graceful = False
    if state.mode == "docker" and state.container_id:
        try:
            import docker

            docker.from_env().containers.get(state.container_id).stop(timeout=int(timeout_s))
        except Exception as exc:  # noqa: BLE001
            raise PackError(f"docker: cannot stop container {state.container_id[:12]}: {exc}") from exc
    else:
        _kill_group(state.pgid, state.pid, timeout_s)
    removed = _clean_shm(state.started_at)
    clear_state()
    return {"stopped": state.model_name, "pid": state.pid, "graceful_stop_service": graceful, "shm_removed": removed}


def _clean_shm(since: float, shm: Path = Path("/dev/shm")) -> list[str]:
    removed = []
    uid = os.getuid()
    for pattern in SHM_PATTERNS:
        for path in shm.glob(pattern):
            try:
                info = path.stat()
                if info.st_uid == uid and info.st_mtime >= since - 1:  # only this deployment's, only ours
                    path.unlink()
                    removed.append(path.name)
            except OSError:
                continue
    return removed
