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

from mindie_pack.emulator.engine import Engine, FakeEngine, RuntimeEngine
from mindie_pack.emulator.server import ServiceState, build_business_app, build_management_app, build_metrics_app

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


def planes(config: dict[str, Any], state: ServiceState) -> list[tuple[str, int, Starlette]]:
    """One server per distinct (address, port); coinciding ports share a server with merged routes."""
    server = config["ServerConfig"]
    ip = server["ipAddress"]
    mgmt_ip = server.get("managementIpAddress", ip)
    business, management = build_business_app(state), build_management_app(state)
    metrics = build_metrics_app(state)
    grouped: dict[tuple[str, int], list[Starlette]] = {}
    grouped.setdefault((ip, int(server["port"])), []).append(business)
    grouped.setdefault((mgmt_ip, int(server.get("managementPort", server["port"]))), []).append(management)
    grouped.setdefault((mgmt_ip, int(server["metricsPort"])), []).append(metrics)
    out = []
    for (host, port), apps in grouped.items():
        app = apps[0] if len(apps) == 1 else Starlette(routes=[r for a in apps for r in a.routes])
        out.append((host, port, app))
    return out


async def serve(config: dict[str, Any], engine: Engine, log: DaemonLog) -> int:
    state = ServiceState(engine=engine, config=config)
    stop_event = asyncio.Event()
    servers: list[uvicorn.Server] = []

    def request_stop() -> None:
        stop_event.set()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, request_stop)
    for host, port, app in planes(config, state):
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                               lifespan="off", timeout_graceful_shutdown=2))
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]  # ours handle SIGTERM
        servers.append(server)
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks):
            log("Failed to listen on the configured addresses, please check if business ip and port are legal.")
            return 1
        await asyncio.sleep(0.02)
    state.ready = True
    log("[endpoint] Start endpoint success")
    log(SUCCESS_LINE)
    await stop_event.wait()
    log(KILLING_LINE)
    for server in servers:
        server.should_exit = True
    await asyncio.gather(*tasks, return_exceptions=True)
    log("All subprocesses exited gracefully.")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    home = service_dir()
    log = DaemonLog(home)
    if args:
        log(f"Unrecognized command-line argument, expect [--config-file, --expert-parallel]: {args[0]}")
        return 1
    try:
        os.setpgrp()  # like the real daemon: its own process group leader
    except OSError:
        pass
    log(f"g_mainPid = {os.getpid()}", stderr=True)
    settings = emulator_settings(home)
    path = config_path(home)
    log(f"ConfigManager: Load Config from {path}.")
    from mindie_pack.config import validate_config_file

    problems = [p for p in validate_config_file(path, check_model_dir=not settings["fake_model"], install_dir=home)
                if p.severity == "error"]
    if problems:
        fail_and_kill_group(log, [f"[ERROR] {p}" for p in problems])
    config = json.loads(path.read_text())
    occupied = port_problems(config["ServerConfig"])
    if occupied:
        fail_and_kill_group(log, occupied)
    model = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]
    log(f"[Start mindie server] loading model {model['modelName']} from {model['modelWeightPath']} "
        f"(backendType {model['backendType']}, worldSize {model['worldSize']})")
    from mindie_pack.emulator.backends import engine_refusal  # release/backend rules of the engine init

    refusal = None if settings["fake_model"] else engine_refusal(model, settings, home)
    if refusal:
        log(f"[MIE04E02011C] [endpoint] Failed to init engine! {refusal}")
        log("[Start mindie server] [fail]")
        return 1
    if settings["load_delay_s"]:
        time.sleep(float(settings["load_delay_s"]))
    try:
        engine: Engine = FakeEngine(settings["prefill_ms"], settings["per_token_ms"]) if settings["fake_model"] \
            else RuntimeEngine(Path(model["modelWeightPath"]))
    except Exception as exc:  # noqa: BLE001 - reported like the real engine init failure
        log(f"[MIE04E02011C] [endpoint] Failed to init engine! {exc}")
        log("[Start mindie server] [fail]")
        return 1
    if os.environ.get("MINDIE_EMULATOR_FAULT") == "never-ready":
        log("[Start mindie server] engine initialising (injected fault: never ready)")
        signal.sigwait({signal.SIGTERM, signal.SIGINT})
        log(KILLING_LINE)
        return 0
    log("[Start mindie server] [success]")
    return asyncio.run(serve(config, engine, log))


if __name__ == "__main__":
    sys.exit(main())
