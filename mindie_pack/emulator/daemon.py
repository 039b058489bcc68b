"""The emulated mindieservice_daemon: same config lookup, checks, log lines, sockets and signals as the real one.

Run by the `bin/mindieservice_daemon` that `mindie-pack emulator install` writes. Settings that the real daemon
does not have (fake model, delays, faults) come from `conf/emulator.json` and MINDIE_EMULATOR_* variables.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette

from mindie_pack.emulator import cluster
from mindie_pack.emulator.cluster import Member
from mindie_pack.emulator.engine import Engine, FakeEngine, RuntimeEngine
from mindie_pack.emulator.server import ServiceState, build_business_app, build_management_app, build_metrics_app
from mindie_pack.wire import format as wire

SUCCESS_LINE = "Daemon start success!"
KILLING_LINE = "Daemon is killing, please wait about 15 seconds..."


class DaemonLog:
    """Lines go to stdout (what deploy captures) and to logs/mindservice.log, as LogConfig.logPath does."""

    def __init__(self, service_dir: Path) -> None:
        logs = service_dir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self._file = (logs / "mindservice.log").open("a", buffering=1)

    def __call__(self, line: str, *, stderr: bool = False) -> None:
        print(line, file=sys.stderr if stderr else sys.stdout, flush=True)
        self._file.write(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {line}\n")


def service_dir() -> Path:
    """The mindie-service folder the launcher (bin/mindieservice_daemon) lives in."""
    home = os.environ.get("MINDIE_EMULATOR_HOME")
    if not home:
        raise SystemExit("MINDIE_EMULATOR_HOME is not set: start the emulator through its bin/mindieservice_daemon")
    return Path(home)


def config_path(home: Path) -> Path:
    return Path(os.environ["MIES_CONFIG_JSON_PATH"]) if os.environ.get("MIES_CONFIG_JSON_PATH") \
        else home / "conf" / "config.json"


def emulator_settings(home: Path) -> dict[str, Any]:
    settings: dict[str, Any] = {"fake_model": False, "prefill_ms": 0.0, "per_token_ms": 0.0, "load_delay_s": 0.0}
    path = home / "conf" / "emulator.json"
    if path.is_file():
        settings.update(json.loads(path.read_text()))
    env = os.environ
    if "MINDIE_EMULATOR_FAKE_MODEL" in env:
        settings["fake_model"] = env["MINDIE_EMULATOR_FAKE_MODEL"] not in ("", "0", "false")
    for key in ("prefill_ms", "per_token_ms", "load_delay_s"):
        if f"MINDIE_EMULATOR_{key.upper()}" in env:
            settings[key] = float(env[f"MINDIE_EMULATOR_{key.upper()}"])
    return settings


def fail_and_kill_group(log: DaemonLog, lines: list[str]) -> None:
    """As the real daemon: print the reasons, then SIGKILL its own process group (the shell shows `Killed`)."""
    for line in lines:
        log(line)
    log("Failed to init endpoint! Please check the service log or console output.")
    sys.stdout.flush()
    os.killpg(os.getpgrp(), signal.SIGKILL)


def port_problems(server: dict[str, Any]) -> list[str]:
    ports = {int(server["port"]), int(server.get("managementPort", server["port"])), int(server["metricsPort"])}
    lines = []
    for port in sorted(ports):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind(("0.0.0.0", port))  # the real daemon test-binds each port on INADDR_ANY
            except OSError as exc:
                lines.append(f"Socket bind failed for port {port}: {exc.strerror}")
    if lines:
        lines.append("Management or Business or Metrics Http server listen port is occupied")
    return lines


def planes(config: dict[str, Any], state: ServiceState, *, business_plane: bool = True,
           ip_override: str | None = None) -> list[tuple[str, int, Starlette]]:
    """One server per distinct (address, port); coinciding ports share a server with merged routes.
    A multi-node worker has no business plane (only the master serves inference)."""
    server = config["ServerConfig"]
    ip = ip_override or server["ipAddress"]
    mgmt_ip = os.environ.get("MIES_CONTAINER_MANAGEMENT_IP") or server.get("managementIpAddress", ip)
    business, management = build_business_app(state), build_management_app(state)
    metrics = build_metrics_app(state)
    grouped: dict[tuple[str, int], list[Starlette]] = {}
    if business_plane:
        grouped.setdefault((ip, int(server["port"])), []).append(business)
    grouped.setdefault((mgmt_ip, int(server.get("managementPort", server["port"]))), []).append(management)
    grouped.setdefault((mgmt_ip, int(server["metricsPort"])), []).append(metrics)
    out = []
    for (host, port), apps in grouped.items():
        app = apps[0] if len(apps) == 1 else Starlette(routes=[r for a in apps for r in a.routes])
        out.append((host, port, app))
    return out


def parse_args(args: list[str], log: DaemonLog) -> dict[str, str] | None:
    """src/server/daemon/llm_daemon.cpp:47-48 and :365-388: `--config-file PATH` and `--expert-parallel true|false`,
    each with a value; anything else is refused (the real daemon then exits with -1, i.e. 255)."""
    known = {"--config-file": "configFilePath", "--expert-parallel": "expertParallel"}
    values: dict[str, str] = {}
    index = 0
    while index < len(args):
        key = args[index]
        if key not in known:
            log("Unrecognized command-line argument, expect [--config-file, --expert-parallel]")
            return None
        if index + 1 >= len(args):
            log(f"Missing value for key: {key}")
            return None
        values[known[key]] = args[index + 1]
        index += 2
    return values


def load_engine(settings: dict[str, Any], model: dict[str, Any]) -> Engine:
    if settings["load_delay_s"]:
        time.sleep(float(settings["load_delay_s"]))
    if settings["fake_model"]:
        return FakeEngine(settings["prefill_ms"], settings["per_token_ms"])
    return RuntimeEngine(Path(model["modelWeightPath"]))


async def serve(config: dict[str, Any], settings: dict[str, Any], log: DaemonLog,
                member: Member | None = None) -> int:
    """The planes listen first and answer 503 on health/readiness until the engine is loaded (not 200 before
    ready); then the success lines; SIGTERM/SIGINT stop the servers."""
    state = ServiceState(config=config, release=str(settings.get("mindie_version") or wire.DEFAULT_RELEASE))
    stop_event = asyncio.Event()
    servers: list[uvicorn.Server] = []
    loop = asyncio.get_running_loop()
    signalled = asyncio.Event()

    def on_signal() -> None:
        signalled.set()
        stop_event.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    for host, port, app in planes(config, state, business_plane=member is None or member.is_master,
                                  ip_override=member.ip if member else None):
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                               lifespan="off", timeout_graceful_shutdown=2))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # ours handle SIGTERM
        servers.append(server)
    tasks = [asyncio.create_task(s.serve()) for s in servers]

    async def shutdown() -> None:
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)

    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            log("Failed to listen on the configured addresses, please check if business ip and port are legal.")
            await shutdown()
            return 1
        await asyncio.sleep(0.02)
    log("[endpoint] Start endpoint success")
    model = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]
    log(f"[Start mindie server] loading model {model['modelName']} from {model['modelWeightPath']} "
        f"(backendType {model['backendType']}, worldSize {model['worldSize']})")
    if os.environ.get("MINDIE_EMULATOR_FAULT") == "never-ready":
        log("[Start mindie server] engine initialising (injected fault: never ready)")
        await stop_event.wait()
        log(KILLING_LINE)
        await shutdown()
        return 0
    loading = asyncio.ensure_future(asyncio.to_thread(load_engine, settings, model))
    stopping = asyncio.ensure_future(stop_event.wait())
    await asyncio.wait({loading, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not loading.done():
        log(KILLING_LINE)
        await shutdown()
        return 0
    try:
        state.engine = loading.result()
    except Exception as exc:  # noqa: BLE001 - reported like the real engine init failure
        log(f"[MIE04E02011C] [endpoint] Failed to init engine! {exc}")
        log("[Start mindie server] [fail]")
        await shutdown()
        return 1
    cluster_server = None
    if member is not None:
        def lost(reason: str) -> None:
            log(f"[ERROR] [multi-node] {reason}: Abnormal node detected")
            if member.is_master:
                state.abnormal = (state.abnormal or []) + [reason.split(" (")[0].removeprefix("server ")]
            else:
                stop_event.set()

        try:
            cluster_server = await cluster.join(member, log, lost)
        except cluster.ClusterError as exc:
            for line in str(exc).splitlines():
                log(line)
            log("[Start mindie server] [fail]")
            await shutdown()
            return 1
    state.ready = True
    log("[Start mindie server] [success]")
    log(SUCCESS_LINE)
    await stopping
    log(KILLING_LINE)
    if cluster_server is not None:
        cluster_server.close()
    await shutdown()
    if member is not None and not member.is_master and not state.stopped and not signalled.is_set():
        log("[multi-node] the master is gone; this worker exits")
        return 1
    log("All subprocesses exited gracefully.")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    home = service_dir()
    log = DaemonLog(home)
    try:
        os.setpgrp()  # like the real daemon: its own process group leader
    except OSError:
        pass
    log(f"g_mainPid = {os.getpid()}", stderr=True)
    options = parse_args(args, log)
    if options is None:
        return 255  # llm_daemon.cpp: `return -1` from main
    if "expertParallel" in options:
        log(f"expert parallel: {options['expertParallel'] == 'true'}")
    settings = emulator_settings(home)
    path = Path(options["configFilePath"]) if "configFilePath" in options else config_path(home)
    log(f"ConfigManager: Load Config from {path}.")
    from mindie_pack.config import validate_config_file

    problems = [p for p in validate_config_file(path, check_model_dir=not settings["fake_model"], install_dir=home)
                if p.severity == "error"]
    if problems:
        # the real daemon's own wording where the config stage knows it ("... missing compulsory field",
        # "... is out of bound [...]"), else our one-line description
        fail_and_kill_group(log, [p.native or f"[ERROR] {p}" for p in problems])
    config = json.loads(path.read_text())
    try:
        member = cluster.member_for(config)
    except cluster.ClusterError as exc:
        fail_and_kill_group(log, [f"[ERROR] {exc}"])
    occupied = port_problems(config["ServerConfig"])
    if occupied:
        fail_and_kill_group(log, occupied)
    model = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]
    from mindie_pack.emulator.backends import engine_refusal  # release/backend rules of the engine init

    refusal = None if settings["fake_model"] else engine_refusal(model, settings, home)
    if refusal:
        log(f"[MIE04E02011C] [endpoint] Failed to init engine! {refusal}")
        log("[Start mindie server] [fail]")
        return 1
    return asyncio.run(serve(config, settings, log, member))


if __name__ == "__main__":
    sys.exit(main())
