"""Start the installed emulator daemon as a real subprocess and wait for its success line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mindie_pack.config import render_config, write_config


def write_config_for(model_dir: Path, path: Path, port: int, *sets: str, version: str = "1.0.RC3",
                     check_model_dir: bool = True) -> dict[str, Any]:
    config = render_config(None, model_dir=model_dir, mindie_version=version, check_model_dir=check_model_dir,
                           sets=[f"ServerConfig.port={port}", f"ServerConfig.managementPort={port + 1}",
                                 f"ServerConfig.metricsPort={port + 2}", *sets])
    write_config(config, path, version=version)
    return config


@contextmanager
def running_daemon(service: Path, config_path: Path, *, env: dict[str, str] | None = None,
                   timeout: float = 120, args: tuple[str, ...] = (), until: str = "Daemon start success!",
                   ) -> Iterator[subprocess.Popen[str]]:
    """The daemon, started like the real one; yields once a line contains `until`. With `args` containing
    --config-file, MIES_CONFIG_JSON_PATH is not set."""
    full_env = {**os.environ, "MIES_CONFIG_JSON_PATH": str(config_path), **(env or {})}
    if "--config-file" in args:
        del full_env["MIES_CONFIG_JSON_PATH"]
    proc = subprocess.Popen([str(service / "bin" / "mindieservice_daemon"), *args], env=full_env,
                            cwd=config_path.parent,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    try:
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError("daemon exited before success:\n" + "".join(lines))
            lines.append(line)
            if until in line:
                break
        else:
            raise AssertionError("no success line:\n" + "".join(lines))
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)


def model_name(config: dict[str, Any]) -> str:
    return str(config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["modelName"])


def sse_events(text: str) -> list[Any]:
    return [json.loads(line[6:]) if line[6:] != "[DONE]" else "[DONE]" for line in text.splitlines()
            if line.startswith("data: ")]
