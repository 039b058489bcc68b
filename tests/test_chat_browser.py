"""`mindie-pack chat` in a real browser (Debian's chromium driven by Playwright) against the MindIE emulator.

The chat server runs as the user runs it (`mindie-pack chat --url ... --port 0`, a subprocess); the emulator
daemon is a real subprocess too, with the tiny Qwen2 model (greedy answers are checked against the service's own
non-stream answer for the same request) or the fake model with a per-token delay (stop, cut stream).
In CI (CI=true) a missing chromium or playwright fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mindie_pack.emulator.install import install_emulator

from deploy_helpers import build_tiny, free_port_block
from emulator_helpers import model_name, running_daemon, sse_events, write_config_for

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SCREENSHOT = Path("/tmp/mindie-pack-chat-screenshot.png")  # kept out of the repository on purpose
WAIT_MS = 90_000  # the longest a page element may take to appear (a busy 2-core machine)


def require_browser() -> None:
    problem = None
    if not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} is missing: run `make setup-dev` (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed: run `make setup-dev` (the dev extra)"
    if problem:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(problem)
        pytest.skip(problem)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1000, "height": 900})
        context.set_default_timeout(WAIT_MS)
        try:
            yield context
        finally:
            context.close()


@contextmanager
def chat_server(*args: str) -> Iterator[str]:
    """`mindie-pack chat --port 0 ARGS` as a subprocess; yields the page URL from its first line."""
    proc = subprocess.Popen([sys.executable, "-m", "mindie_pack", "chat", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 120)
        line = proc.stdout.readline() if ready else ""
        match = re.match(r"chat page: (http://127\.0\.0\.1:\d+)/ ", line)
        if not match:
            proc.kill()
            raise AssertionError(f"no start line from mindie-pack chat: {line!r}\n{proc.communicate(timeout=30)[1]}")
        yield match.group(1)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny(tmp_path_factory.mktemp("chat-model"))[1]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_emulator(tmp_path_factory.mktemp("chat-emu") / "Ascend").mindie_service


@contextmanager
def daemon(service: Path, model_dir: Path, folder: Path, **env: str) -> Iterator[tuple[subprocess.Popen[str], str,
                                                                                        str, str]]:
    port = free_port_block()
    config = write_config_for(model_dir, folder / "config.json", port)
    with running_daemon(service, folder / "config.json", env={"MIES_SERVICE_MONITOR_MODE": "1", **env}) as proc:
        # business, metrics (the management address of write_config_for), modelName
        yield proc, f"http://127.0.0.1:{port}", f"http://127.0.0.2:{port + 2}", model_name(config)


@pytest.fixture(scope="module")
def real(built: Path, service: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """The tiny Qwen2 model on the CPU runtime, and a chat page in front of it: (page, business, model)."""
    with daemon(service, built, tmp_path_factory.mktemp("real")) as (_, business, _, name):
        with chat_server("--url", business) as page:
            yield page, business, name


@pytest.fixture(scope="module")
def slow(built: Path, service: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, str]]:
    """The fake model at 250 ms a token: (page, business, metrics)."""
    with daemon(service, built, tmp_path_factory.mktemp("slow"), MINDIE_EMULATOR_FAKE_MODEL="1",
                MINDIE_EMULATOR_PER_TOKEN_MS="250") as (_, business, metrics, _):
        with chat_server("--url", business) as page:
            yield page, business, metrics


def open_page(browser: Any, url: str, status: str = "ready") -> Any:
    page = browser.new_page()
    page.goto(url)
    page.wait_for_function("s => document.getElementById('status').textContent === s", arg=status)
    return page


def ask(page: Any, prompt: str, *, enter: bool = False) -> Any:
    """Send a prompt; returns the new assistant message (a locator)."""
    count = page.locator(".msg.assistant").count()
    page.fill("#prompt", prompt)
    if enter:
        page.press("#prompt", "Enter")
    else:
        page.click("#send")
    return page.locator(".msg.assistant").nth(count)


def outcome(page: Any, answer: Any) -> str:
    answer.locator(".meta").wait_for()
    page.wait_for_function("e => e.dataset.outcome !== undefined", arg=answer.element_handle())
    return str(answer.get_attribute("data-outcome"))


def shell_words(command: str) -> list[str]:
    """The words bash passes to `curl` for this command line (curl replaced by a function printing them)."""
    script = 'curl() { printf "%s\\0" curl "$@"; }\n' + command
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, timeout=30).stdout
    return out.split("\0")[:-1]


def metric(metrics_url: str, name: str) -> float:
    text = httpx.get(f"{metrics_url}/metrics", timeout=30).text
    match = re.search(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M)
    assert match, f"{name} not in /metrics"
    return float(match.group(1))


def test_page_loads_with_the_service_and_its_model(browser: Any, real: tuple[str, str, str]) -> None:
    page_url, business, name = real
    page = browser.new_page()
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    failures: list[str] = []
    page.on("console", lambda message: failures.append(message.text) if message.type == "error" else None)
    page.on("pageerror", lambda error: failures.append(str(error)))
    page.goto(page_url)
    page.wait_for_function("() => document.getElementById('status').textContent === 'ready'")
    # Offline by construction: everything the page loads comes from the chat server itself.
    assert requested and all(url.startswith(page_url + "/") for url in requested), requested
    assert failures == []
    assert page.text_content("#target") == business
    assert page.input_value("#model") == name
    assert page.text_content("#banner") == ""
    assert page.is_enabled("#send") and not page.is_enabled("#stop")
    page.close()


def test_greedy_answers_equal_the_service_non_stream_answers(browser: Any, real: tuple[str, str, str]) -> None:
    page_url, business, name = real
    page = open_page(browser, page_url)
    page.fill("#temperature", "0")
    page.fill("#max_tokens", "12")
    history: list[dict[str, str]] = []
    for turn, prompt in enumerate(("Hello, who are you?", "Tell me more about 北京.")):
        answer = ask(page, prompt, enter=turn == 1)
        assert outcome(page, answer) == "done"
        shown = answer.locator(".text").text_content()
        curl = answer.locator("details.curl pre").text_content()
        body = json.loads(shell_words(curl)[-1])
        history.append({"role": "user", "content": prompt})
        assert body == {"model": name, "messages": history, "temperature": 0, "top_p": 1, "max_tokens": 12,
                        "stream": True}
        # The oracle: the service's own non-stream answer to the same request.
        expected = httpx.post(f"{business}/v1/chat/completions", json={**body, "stream": False}, timeout=120).json()
        assert shown == expected["choices"][0]["message"]["content"] and shown
        # The curl shown for the runbook works as it stands and streams the same text.
        streamed = subprocess.run(["bash", "-c", curl], capture_output=True, text=True, timeout=120, check=True)
        chunks = [c for c in sse_events(streamed.stdout) if c != "[DONE]"]
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks) == shown
        meta = answer.locator(".meta").text_content()
        tokens = expected["usage"]["completion_tokens"]
        finish = expected["choices"][0]["finish_reason"]
        assert re.fullmatch(rf"TTFT \d+ ms · {tokens} tokens · (\d+\.\d|–) tok/s · total \d+ ms · finish: {finish}",
                            meta), meta
        history.append({"role": "assistant", "content": shown})
    answer.locator("details.curl summary").click()
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    page.close()


def test_a_service_error_body_is_shown(browser: Any, real: tuple[str, str, str]) -> None:
    page_url, business, name = real
    page = open_page(browser, page_url)
    page.fill("#top_p", "1.5")  # out of MindIE's (0, 1]: the service, not the page, refuses it
    answer = ask(page, "hello")
    assert outcome(page, answer) == "error-shown"
    body = json.loads(shell_words(answer.locator("details.curl pre").text_content())[-1])
    assert body["top_p"] == 1.5 and body["model"] == name
    refused = httpx.post(f"{business}/v1/chat/completions", json=body, timeout=60)  # the service's own answer
    assert 400 <= refused.status_code < 500
    error = answer.locator(".error").text_content()
    assert error.startswith(f"the service answered HTTP {refused.status_code} to {business}/v1/chat/completions: ")
    assert error.endswith("\n\n" + refused.text)
    assert answer.locator(".text").text_content() == ""
    # The failed turn is not sent again: the next request starts the conversation afresh.
    page.fill("#top_p", "1")
    page.fill("#max_tokens", "2")
    retry = ask(page, "hello again")
    assert outcome(page, retry) == "done"
    body = json.loads(shell_words(retry.locator("details.curl pre").text_content())[-1])
    assert body["messages"] == [{"role": "user", "content": "hello again"}]
    page.close()


def test_stop_ends_the_stream_and_the_upstream_request(browser: Any, slow: tuple[str, str, str]) -> None:
    page_url, _, metrics = slow
    page = open_page(browser, page_url)
    succeeded = metric(metrics, "request_success_total")
    page.fill("#max_tokens", "16")
    answer = ask(page, "count slowly")
    page.wait_for_function("e => e.querySelector('.text').textContent.length > 0", arg=answer.element_handle())
    assert page.is_enabled("#stop") and not page.is_enabled("#send")
    page.click("#stop")
    assert outcome(page, answer) == "stopped"
    meta = answer.locator(".meta").text_content()
    assert re.fullmatch(r"TTFT \d+ ms · ≈\d+ tokens · (\d+\.\d|–) tok/s · total \d+ ms · stopped", meta), meta
    assert page.is_enabled("#send") and not page.is_enabled("#stop")
    stopped_text = answer.locator(".text").text_content()
    # The proxy closed its upstream request: the service's request ends without completing (bounded wait).
    deadline = time.monotonic() + 60
    while metric(metrics, "num_requests_running") != 0:
        assert time.monotonic() < deadline, "the upstream request is still running after stop"
        time.sleep(0.1)
    assert metric(metrics, "request_success_total") == succeeded
    assert answer.locator(".text").text_content() == stopped_text
    assert 0 < len(stopped_text.split()) < 16  # the fake model's full answer has 16 words
    # What was said before the stop stays in the conversation.
    page.fill("#max_tokens", "1")
    follow_up = ask(page, "go on")
    assert outcome(page, follow_up) == "done"
    body = json.loads(shell_words(follow_up.locator("details.curl pre").text_content())[-1])
    assert body["messages"] == [{"role": "user", "content": "count slowly"},
                                {"role": "assistant", "content": stopped_text}, {"role": "user", "content": "go on"}]
    page.close()


def test_a_stream_cut_mid_way_is_shown(browser: Any, built: Path, service: Path, tmp_path: Path) -> None:
    with daemon(service, built, tmp_path, MINDIE_EMULATOR_FAKE_MODEL="1", MINDIE_EMULATOR_PER_TOKEN_MS="250") as (
            proc, business, _, _):
        with chat_server("--url", business) as page_url:
            page = open_page(browser, page_url)
            answer = ask(page, "tell me a long story")
            page.wait_for_function("e => e.querySelector('.text').textContent.length > 0",
                                   arg=answer.element_handle())
            os.killpg(proc.pid, signal.SIGKILL)  # the service dies mid-answer
            assert outcome(page, answer) == "error-shown"
            error = answer.locator(".error").text_content()
            assert error.startswith("the stream was cut after "), error
            assert answer.locator(".text").text_content() != ""  # what arrived stays visible
            page.close()


def test_an_unreachable_service_is_shown(browser: Any) -> None:
    dead = f"http://127.0.0.1:{free_port_block(1)}"
    with chat_server("--url", dead) as page_url:
        page = open_page(browser, page_url, status="not reachable")
        banner = page.text_content("#banner")
        assert banner.startswith(f"service not reachable: cannot reach the service at {dead}/v1/models: "), banner
        answer = ask(page, "anyone there?")
        assert outcome(page, answer) == "error"
        error = answer.locator(".error").text_content()
        assert error.startswith(f"the chat server answered HTTP 502: cannot reach the service at {dead}/v1/models"), \
            error
        page.close()
