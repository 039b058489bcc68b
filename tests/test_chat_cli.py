"""`mindie-pack chat` on the command line: usage errors (one line, exit 2), the default target, sharing."""

from __future__ import annotations

import select
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from mindie_pack.deploy.state import STATE_ENV, DeploymentState, save_state

from conftest import CliResult


@pytest.mark.parametrize(("args", "message"), [
    (["--url", "ftp://127.0.0.1:1025"], "error: --url 'ftp://127.0.0.1:1025': expected http://HOST:PORT or "
     "https://HOST:PORT (MindIE's business address)"),
    (["--url", "127.0.0.1:1025"], "error: --url '127.0.0.1:1025': expected http://HOST:PORT or https://HOST:PORT "
     "(MindIE's business address)"),
    (["--url", "http://"], "error: --url 'http://': expected http://HOST:PORT or https://HOST:PORT (MindIE's "
     "business address)"),
    (["--url", "http://127.0.0.1:99999"], "error: --url 'http://127.0.0.1:99999': port 99999 is out of range "
     "1-65535"),
    (["--url", "http://[::1"], "error: --url 'http://[::1': not a URL (Invalid port: ':1'); expected e.g. "
     "http://127.0.0.1:1025"),
    (["--url", "http://127.0.0.1:1025", "--port", "70000"], "error: --port 70000: expected 0-65535 (0 = any free "
     "port)"),
    (["--url", "http://127.0.0.1:1025", "--port", "-1"], "error: --port -1: expected 0-65535 (0 = any free port)"),
    (["--url", "http://127.0.0.1:1025", "--port", "abc"], "error: --port 'abc': expected a whole number 0-65535 "
     "(0 = any free port)"),
    (["--url", "http://127.0.0.1:1025", "--timeout", "0"], "error: --timeout '0': expected a positive number of "
     "seconds"),
    (["--url", "http://127.0.0.1:1025", "--timeout", "soon"], "error: --timeout 'soon': expected a positive number "
     "of seconds"),
    (["--url", "http://127.0.0.1:1025", "--host", "192.0.2.1"], "error: --host 192.0.2.1 --port 7860: cannot listen "
     "there (Cannot assign requested address)"),
])
def test_usage_errors_are_one_line_exit_2(cli: Callable[..., CliResult], args: list[str], message: str) -> None:
    result = cli("chat", *args)
    assert (result.exit_code, result.stdout, result.stderr) == (2, "", message + "\n")


def test_a_busy_port_is_one_line_exit_2(cli: Callable[..., CliResult]) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = cli("chat", "--url", "http://127.0.0.1:1025", "--port", str(port))
    assert result.exit_code == 2
    assert result.stderr == f"error: --host 127.0.0.1 --port {port}: cannot listen there (Address already in use)\n"


def test_no_url_and_no_deployment(cli: Callable[..., CliResult], tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    result = cli("chat")
    assert result.exit_code == 2 and result.stderr.startswith("error: no --url given and no current deployment")
    assert result.stderr.count("\n") == 1


def start(*args: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen([sys.executable, "-m", "mindie_pack", "chat", "--port", "0", *args], text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 120)
    line = proc.stdout.readline() if ready else ""
    return proc, line


def stop(proc: subprocess.Popen[str]) -> str:
    proc.terminate()
    _, err = proc.communicate(timeout=30)
    return err


def test_the_current_deployment_is_the_default_target(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:  # nothing listens there: the page still names the target and its model
        probe.bind(("127.0.0.1", 0))
        business = f"http://127.0.0.1:{probe.getsockname()[1]}"
    monkeypatch.setenv(STATE_ENV, str(tmp_path))
    save_state(DeploymentState(pid=None, pgid=None, mode="host", config_path="/x/config.json", model_dir="/x/m",
                               model_name="qwen2-7b", log_path="/x/log", started_at=0.0, business_url=business,
                               management_url=business, metrics_url=business, mindie_home="/x", deployment_dir="/x"))
    proc, line = start()
    try:
        assert line.startswith("chat page: http://127.0.0.1:") and line.rstrip().endswith(
            f"->  MindIE {business} (model qwen2-7b); Ctrl+C to stop"), line
        page = line.split()[2].rstrip("/")
        info = httpx.get(f"{page}/api/info", timeout=30).json()
        assert (info["url"], info["model"], info["models"]) == (business, "qwen2-7b", [])
        assert info["error"].startswith(f"cannot reach the service at {business}/v1/models")
    finally:
        err = stop(proc)
    # One warning (the service does not answer), no sharing warning for a loopback page, no traceback on SIGTERM.
    assert err == (f"warning: cannot reach the service at {business}/v1/models: All connection attempts failed (is "
                   "MindIE running?); the page shows this until the service answers\n")


def test_sharing_on_all_addresses_warns_and_accepts_any_host_name() -> None:
    proc, line = start("--url", "http://127.0.0.1:9", "--host", "0.0.0.0")
    try:
        assert line.startswith("chat page: http://0.0.0.0:"), line
        port = line.split()[2].rstrip("/").rsplit(":", 1)[1]
        response = httpx.get(f"http://127.0.0.1:{port}/", headers={"host": f"gpu-box.lan:{port}"}, timeout=30)
        assert response.status_code == 200
    finally:
        err = stop(proc)
    assert err.startswith(f"warning: serving on 0.0.0.0:{port} with NO authentication: anyone who can reach this "
                          "machine can use the model")
