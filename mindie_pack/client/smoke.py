"""`mindie-pack smoke`: request checks against a MindIE service, in the order an operator would run them."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from mindie_pack.client.target import Target
from mindie_pack.client.transport import (
    DEFAULT_DEADLINE_S,
    HttpStatusError,
    NoAnswer,
    request_sync,
    stream_sync,
    timeouts,
)
from mindie_pack.errors import PackError
from mindie_pack.wire.format import request_body
from mindie_pack.wire.stream import StreamResult

PROMPT = "I love Beijing, because"
ALL_CHECKS = ("health", "models", "generate", "generate_stream", "infer", "infer_stream", "chat", "chat_stream",
              "completions", "metrics")


class CheckFailed(Exception):
    pass


@dataclass
class CheckResult:
    name: str
    status: str  # passed | failed | skipped
    latency_ms: float
    tokens: int | None = None
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SmokeReport:
    target: Target
    checks: list[CheckResult] = field(default_factory=list)
    unreachable: bool = False

    @property
    def exit_code(self) -> int:
        if self.unreachable:
            return 2
        return 1 if any(c.status == "failed" for c in self.checks) else 0

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.exit_code == 0, "exit_code": self.exit_code, "unreachable": self.unreachable,
                "business_url": self.target.business_url, "management_url": self.target.management_url,
                "model": self.target.model, "checks": [c.to_dict() for c in self.checks]}


def _need(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _json(response: httpx.Response, what: str) -> Any:
    if response.status_code != 200:
        raise CheckFailed(f"{what} answered {response.status_code}: {response.text[:300]}")
    try:
        return response.json()
    except ValueError:
        raise CheckFailed(f"{what} answered 200 with a body that is not JSON: {response.text[:200]!r}") from None


class SmokeRunner:
    def __init__(self, target: Target, client: httpx.Client, max_tokens: int = 16,
                 timeout_s: float = DEFAULT_DEADLINE_S) -> None:
        self.target = target
        self.client = client
        self.max_tokens = max_tokens
        self.model = target.model
        self.timeout_s = timeout_s

    def _get(self, url: str) -> httpx.Response:
        return request_sync(self.client, "GET", url, self.timeout_s)

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return request_sync(self.client, "POST", self.target.business_url + path, self.timeout_s, body)

    # -- checks; each returns the number of generated tokens (or None) -------------------------------------
    def health(self) -> int | None:
        for path in ("/health", "/v2/health/ready"):
            response = self._get(self.target.management_url + path)
            _need(response.status_code == 200, f"{path} on {self.target.management_url} answered "
                  f"{response.status_code} {response.text[:200]}")
        return None

    def models(self) -> int | None:
        data = _json(self._get(self.target.business_url + "/v1/models"), "/v1/models")
        ids = [m.get("id") for m in data.get("data", []) if isinstance(m, dict)] if isinstance(data, dict) else []
        _need(bool(ids), f"/v1/models lists no model: {str(data)[:200]}")
        if self.model is None:
            self.model = ids[0]
        _need(self.model in ids, f"/v1/models lists {ids}, not {self.model!r}")
        return None

    def generate(self) -> int | None:
        path, payload = request_body("tgi", PROMPT, self.max_tokens, stream=False, details=True)
        body = _json(self._post(path, payload), path)
        _need(isinstance(body, dict) and "generated_text" in body, f"{path}: no generated_text in {str(body)[:200]}")
        _need(isinstance(body["generated_text"], str) and body["generated_text"] != "", f"{path}: empty text")
        details = body.get("details") or {}
        _need(isinstance(details.get("generated_tokens"), int), f"{path}: details.generated_tokens missing")
        return int(details["generated_tokens"])

    def _need_model(self) -> None:
        """The OpenAI checks need a model name: from --model / the deployment, else the first /v1/models id."""
        if self.model is None:
            self.models()

    def _stream(self, api: str, what: str, *, details: bool = True) -> StreamResult:
        if api.startswith("openai"):
            self._need_model()
        path, payload = request_body(api, PROMPT, self.max_tokens, model=self.model, stream=True, details=details)
        try:
            result = stream_sync(self.client, self.target.business_url + path, payload, api, self.timeout_s)
        except HttpStatusError as exc:
            raise CheckFailed(f"{what} {exc}") from None
        except NoAnswer as exc:
            raise CheckFailed(f"{what}: {exc}") from None
        _need(bool(result.events), f"{what}: no stream events")
        _need(not result.problems, f"{what}: {'; '.join(result.problems)}")
        _need(result.mismatch is None, f"{what}: {result.mismatch}")
        _need(result.finished, f"{what}: the stream ended without a final event")
        _need(result.text != "", f"{what}: empty text")
        return result

    def generate_stream(self) -> int | None:
        result = self._stream("tgi", "/generate_stream")
        _need(result.generated_text is not None, "/generate_stream: the last event has no generated_text")
        _need(result.output_tokens is not None, "/generate_stream: no details.generated_tokens in the last event")
        return result.received_tokens

    def infer(self) -> int | None:
        path, payload = request_body("infer", PROMPT, self.max_tokens, stream=False, details=True)
        body = _json(self._post(path, payload), path)
        _need(isinstance(body, dict) and isinstance(body.get("generated_text"), str) and body["generated_text"] != "",
              "/infer: empty text")
        details = body.get("details") or {}
        _need(isinstance(details.get("generated_tokens"), int), "/infer: details.generated_tokens missing")
        return int(details["generated_tokens"])

    def infer_stream(self) -> int | None:
        result = self._stream("infer", "/infer stream")
        _need(result.generated_text is not None, "/infer stream: the last event has no generated_text")
        return result.received_tokens

    def chat(self) -> int | None:
        self._need_model()
        path, payload = request_body("openai-chat", PROMPT, self.max_tokens, model=self.model, stream=False)
        body = _json(self._post(path, payload), path)
        choices = body.get("choices") or [] if isinstance(body, dict) else []
        _need(bool(choices) and isinstance(choices[0].get("message"), dict), f"{path}: no choices")
        content = choices[0]["message"].get("content")
        _need(isinstance(content, str) and content != "", f"{path}: empty content")
        _need(choices[0].get("finish_reason") in ("stop", "length", "tool_calls"), f"{path}: bad finish_reason")
        return self._usage(body, path)

    def chat_stream(self) -> int | None:
        what = "/v1/chat/completions stream"
        result = self._stream("openai-chat", what)
        _need(result.done_marker, f"{what}: not terminated by data: [DONE]")
        chunks = [e for e in result.events if isinstance(e, dict)]
        _need(all(c.get("object") == "chat.completion.chunk" for c in chunks),
              f"{what}: a chunk is not chat.completion.chunk")
        _need(result.finish_reason in ("stop", "length", "tool_calls"), f"{what}: no finish_reason")
        with_usage = [c for c in chunks if isinstance(c.get("usage"), dict)]
        _need(bool(with_usage), f"{what}: no usage")
        return self._usage(with_usage[-1], what)

    def completions(self) -> int | None:
        self._need_model()
        path, payload = request_body("openai-completions", PROMPT, self.max_tokens, model=self.model, stream=False)
        body = _json(self._post(path, payload), path)
        choices = body.get("choices") or [] if isinstance(body, dict) else []
        _need(bool(choices) and isinstance(choices[0].get("text"), str) and choices[0]["text"] != "",
              f"{path}: empty text")
        return self._usage(body, path)

    def metrics(self) -> int | None:
        if not self.target.metrics_url:
            raise _Skip("no metrics URL")
        response = self._get(self.target.metrics_url + "/metrics")
        if response.status_code == 500 and "MIES_SERVICE_MONITOR_MODE" in response.text:
            raise _Skip("metrics disabled (MIES_SERVICE_MONITOR_MODE is not 1)")
        _need(response.status_code == 200, f"/metrics answered {response.status_code}")
        _need("request_success_total" in response.text, "/metrics: no request_success_total metric")
        return None

    # -- helpers ----------------------------------------------------------------------------------------
    def _usage(self, body: dict[str, Any], what: str) -> int:
        usage = body.get("usage") or {}
        for key in ("prompt_tokens", "completion_tokens", "total_tokens"):
            _need(isinstance(usage.get(key), int), f"{what}: usage.{key} missing")
        _need(usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"],
              f"{what}: usage.total_tokens != prompt_tokens + completion_tokens")
        return int(usage["completion_tokens"])

    def expect(self, cases: list[dict[str, Any]]) -> list[CheckResult]:
        results = []
        for index, case in enumerate(cases):
            name = f"expect[{index}]"
            start = time.perf_counter()
            try:
                body = _json(self._post("/generate", {
                    "inputs": case["prompt"], "parameters": {
                        "do_sample": False, "max_new_tokens": int(case.get("max_new_tokens", self.max_tokens))}}),
                    "/generate")
                text = body.get("generated_text") if isinstance(body, dict) else None
                if "expect" in case:
                    _need(text == case["expect"], f"greedy output {text!r} != expected {case['expect']!r}")
                if "contains" in case:
                    _need(isinstance(text, str) and case["contains"] in text,
                          f"greedy output {text!r} does not contain {case['contains']!r}")
                results.append(CheckResult(name, "passed", _ms(start)))
            except NoAnswer as exc:
                results.append(CheckResult(name, "failed", _ms(start), None, f"/generate: {exc}"))
            except (CheckFailed, httpx.HTTPError) as exc:
                results.append(CheckResult(name, "failed", _ms(start), None, str(exc)))
        return results


class _Skip(Exception):
    pass


def _ms(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 2)


def load_expectations(path: Path) -> list[dict[str, Any]]:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PackError(f"--expect {path}: unreadable ({exc})") from exc
    cases = data.get("cases") if isinstance(data, dict) else data
    if not isinstance(cases, list) or not all(isinstance(c, dict) and "prompt" in c and ("expect" in c or
                                                                                         "contains" in c)
                                              for c in cases):
        raise PackError(f"--expect {path}: expected a list of {{prompt, expect | contains[, max_new_tokens]}}")
    return cases


def wait_until_ready(target: Target, client: httpx.Client, wait_s: float,
                     on_wait: Callable[[float], None] | None = None) -> bool:
    deadline = time.monotonic() + wait_s
    delay = 0.2
    while True:
        try:
            probe = max(0.5, min(5.0, deadline - time.monotonic()))
            if client.get(target.management_url + "/health", timeout=timeouts(probe)).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        if time.monotonic() + delay > deadline:
            return False
        if on_wait:
            on_wait(deadline - time.monotonic())
        time.sleep(delay)
        delay = min(delay * 2, 5.0)


def run_smoke(target: Target, *, checks: list[str] | None = None, wait_s: float = 0.0, expect: Path | None = None,
              max_tokens: int = 16, timeout_s: float = DEFAULT_DEADLINE_S) -> SmokeReport:
    """Every request is bounded by `timeout_s` (connect within 5 s); a check whose request passes it fails with
    "no answer in N s"."""
    names = checks or list(ALL_CHECKS)
    unknown = [n for n in names if n not in ALL_CHECKS]
    if unknown:
        raise PackError(f"--checks {unknown[0]!r}: expected some of {', '.join(ALL_CHECKS)}")
    cases = load_expectations(expect) if expect else []
    report = SmokeReport(target)
    with httpx.Client(timeout=timeouts(timeout_s), trust_env=False) as client:
        if wait_s > 0:
            wait_until_ready(target, client, wait_s)  # still down afterwards: the checks below say so
        runner = SmokeRunner(target, client, max_tokens, timeout_s)
        for name in names:
            start = time.perf_counter()
            try:
                tokens = getattr(runner, name)()
                report.checks.append(CheckResult(name, "passed", _ms(start), tokens))
            except _Skip as exc:
                report.checks.append(CheckResult(name, "skipped", _ms(start), None, str(exc)))
            except CheckFailed as exc:
                report.checks.append(CheckResult(name, "failed", _ms(start), None, str(exc)))
            except NoAnswer as exc:
                report.checks.append(CheckResult(name, "failed", _ms(start), None, f"{name}: {exc}"))
            except httpx.HTTPError as exc:
                report.checks.append(CheckResult(name, "failed", _ms(start), None,
                                                 f"{type(exc).__name__}: {exc}"))
        report.checks += runner.expect(cases)
        failed = [c for c in report.checks if c.status == "failed"]
        if failed and all("Connect" in c.detail for c in failed) and not _reachable(client, target):
            report.unreachable = True
    return report


def _reachable(client: httpx.Client, target: Target) -> bool:
    for url in (target.management_url, target.business_url):
        try:
            client.get(url + "/health", timeout=3)
            return True
        except (httpx.ConnectError, httpx.ConnectTimeout):
            continue
        except httpx.HTTPError:
            return True  # it accepted the connection
    return False
