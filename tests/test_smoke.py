"""`mindie-pack smoke` against the emulator: passes when healthy; names the failing check and exits right."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from mindie_pack.emulator.install import install_emulator

from conftest import CliResult
from deploy_helpers import build_tiny, free_port_block
from emulator_helpers import running_daemon, write_config_for

pytestmark = pytest.mark.slow
Cli = Callable[..., CliResult]


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("smoke")
    _, model_dir = build_tiny(root)
    return install_emulator(root / "Ascend").mindie_service, model_dir


@pytest.fixture
def service_on(setup: tuple[Path, Path], tmp_path: Path) -> Callable[..., Iterator[int]]:
    from contextlib import contextmanager

    service, model_dir = setup

    @contextmanager
    def start(fault: str = "") -> Iterator[int]:
        port = free_port_block()
        write_config_for(model_dir, tmp_path / "config.json", port)
        env = {"MINDIE_EMULATOR_FAKE_MODEL": "1", "MIES_SERVICE_MONITOR_MODE": "1", "MINDIE_EMULATOR_FAULT": fault}
        with running_daemon(service, tmp_path / "config.json", env=env):
            yield port
    return start


def _smoke(cli: Cli, port: int, *extra: str) -> tuple[int, dict[str, dict[str, object]], dict[str, object]]:
    result = cli("smoke", "--url", f"http://127.0.0.1:{port}", "--management-url", f"http://127.0.0.2:{port + 1}",
                 "--metrics-url", f"http://127.0.0.2:{port + 2}", "--json", *extra)
    data = json.loads(result.stdout)
    return result.exit_code, {c["name"]: c for c in data["checks"]}, data


def test_healthy_service_passes_every_check(service_on: Callable[..., Iterator[int]], cli: Cli,
                                            tmp_path: Path) -> None:
    expect = tmp_path / "golden.yaml"
    expect.write_text("- prompt: I love Beijing, because\n  max_new_tokens: 3\n  expect: ' echo foxtrot golf'\n"
                      "- prompt: hello\n  max_new_tokens: 2\n  contains: ' '\n")
    with service_on() as port:
        code, checks, data = _smoke(cli, port, "--expect", expect)
    assert code == 0, [c for c in checks.values() if c["status"] != "passed"]
    assert [c for c in checks] == ["health", "models", "generate", "generate_stream", "infer", "infer_stream", "chat",
                                   "chat_stream", "completions", "metrics", "expect[0]", "expect[1]"]
    assert all(c["status"] == "passed" for c in checks.values())
    assert {name: c["tokens"] for name, c in checks.items() if c["tokens"] is not None} == {
        name: 16 for name in ("generate", "generate_stream", "infer", "infer_stream", "chat", "chat_stream",
                              "completions")}


def test_golden_mismatch_fails(service_on: Callable[..., Iterator[int]], cli: Cli, tmp_path: Path) -> None:
    expect = tmp_path / "golden.json"
    expect.write_text(json.dumps([{"prompt": "hello", "expect": "something else", "max_new_tokens": 2}]))
    with service_on() as port:
        code, checks, _ = _smoke(cli, port, "--checks", "health", "--expect", expect)
    assert code == 1
    assert checks["expect[0]"]["status"] == "failed"
    assert "!= expected 'something else'" in str(checks["expect[0]"]["detail"])


@pytest.mark.parametrize(("fault", "check", "detail"), [
    ("wrong-shape", "generate", "/generate: no generated_text"),
    ("error-status", "generate", "/generate answered 500"),
    ("empty-text", "generate", "/generate: empty text"),
])
def test_broken_service_names_the_check(fault: str, check: str, detail: str,
                                        service_on: Callable[..., Iterator[int]], cli: Cli) -> None:
    with service_on(fault) as port:
        code, checks, _ = _smoke(cli, port)
    assert code == 1
    assert checks["health"]["status"] == "passed"
    assert checks[check]["status"] == "failed"
    assert str(checks[check]["detail"]).startswith(detail)


def test_service_down_is_exit_2(cli: Cli) -> None:
    port = free_port_block()
    code, checks, data = _smoke(cli, port, "--checks", "health,models")
    assert code == 2 and data["unreachable"] is True
    assert checks["health"]["status"] == "failed"


def test_wait_gives_up_when_nothing_answers(cli: Cli) -> None:
    port = free_port_block()
    code, checks, data = _smoke(cli, port, "--checks", "health", "--wait", "1.5")
    assert code == 2 and data["unreachable"] is True
    assert "ConnectError" in str(checks["health"]["detail"])


@pytest.mark.parametrize("fault", ["silent", "keepalive-forever"])
def test_a_server_that_never_answers_fails_each_check_in_time(fault: str, service_on: Callable[..., Iterator[int]],
                                                              cli: Cli) -> None:
    with service_on(fault) as port:
        code, checks, data = _smoke(cli, port, "--checks", "health,infer_stream,chat_stream", "--timeout",
                                     "1")
    assert code == 1 and data["unreachable"] is False
    assert checks["health"]["status"] == "passed"
    assert checks["infer_stream"]["detail"] == "/infer stream: no answer in 1 s"
    assert checks["chat_stream"]["detail"] == "/v1/chat/completions stream: no answer in 1 s"
