"""`mindie-pack smoke`: request checks against a MindIE service, in the order an operator would run them."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from mindie_pack.client.sse import iter_sse_data
from mindie_pack.client.target import Target
from mindie_pack.errors import PackError

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
    def __init__(self, target: Target, client: httpx.Client, max_tokens: int = 16) -> None:
        self.target = target
        self.client = client
        self.max_tokens = max_tokens
        self.model = target.model

    # -- checks; each returns the number of generated tokens (or None) -------------------------------------
    def health(self) -> int | None:
        for path in ("/health", "/v2/health/ready"):
            response = self.client.get(self.target.management_url + path)
            _need(response.status_code == 200, f"{path} on {self.target.management_url} answered "
                  f"{response.status_code} {response.text[:200]}")
        return None

    def models(self) -> int | None:
        data = _json(self.client.get(self.target.business_url + "/v1/models"), "/v1/models")
        ids = [m.get("id") for m in data.get("data", [])] if isinstance(data, dict) else []
        _need(bool(ids), f"/v1/models lists no model: {str(data)[:200]}")
        if self.model is None:
            self.model = ids[0]
        _need(self.model in ids, f"/v1/models lists {ids}, not {self.model!r}")
        return None

    def generate(self) -> int | None:
        body = _json(self.client.post(self.target.business_url + "/generate", json={
            "inputs": PROMPT, "parameters": {"max_new_tokens": self.max_tokens, "details": True}, "stream": False}),
            "/generate")
        _need(isinstance(body, dict) and "generated_text" in body, f"/generate: no generated_text in {str(body)[:200]}")
        _need(isinstance(body["generated_text"], str) and body["generated_text"] != "", "/generate: empty text")
        details = body.get("details") or {}
        _need(isinstance(details.get("generated_tokens"), int), "/generate: details.generated_tokens missing")
        return int(details["generated_tokens"])

    def generate_stream(self) -> int | None:
        events = self._sse("/generate_stream", {"inputs": PROMPT, "parameters": {"max_new_tokens": self.max_tokens},
                                                "stream": True})
        _need(bool(events), "/generate_stream: no SSE events")
        tokens = [e for e in events if isinstance(e.get("token"), dict) and e.get("generated_text") is None]
        final = events[-1]
        _need(isinstance(final.get("generated_text"), str), "/generate_stream: the last event has no generated_text")
        _need(final["generated_text"] != "", "/generate_stream: empty generated_text")
        joined = "".join(str(e["token"].get("text") or "") for e in tokens)
        _need(final["generated_text"] == joined, "/generate_stream: generated_text differs from the streamed "
              f"tokens ({final['generated_text']!r} vs {joined!r})")
        return len(tokens)

    def infer(self) -> int | None:
        body = _json(self.client.post(self.target.business_url + "/infer", json={
            "inputs": PROMPT, "stream": False, "parameters": {"max_new_tokens": self.max_tokens}}), "/infer")
        _need(isinstance(body.get("generated_text"), str) and body["generated_text"] != "", "/infer: empty text")
        details = body.get("details") or {}
        _need(isinstance(details.get("generated_tokens"), int), "/infer: details.generated_tokens missing")
        return int(details["generated_tokens"])

    def infer_stream(self) -> int | None:
        events = self._sse("/infer", {"inputs": PROMPT, "stream": True,
                                      "parameters": {"max_new_tokens": self.max_tokens}})
        _need(len(events) >= 2, "/infer stream: fewer than two events")
        final = events[-1]
        _need(isinstance(final.get("generated_text"), str) and final["generated_text"] != "",
              "/infer stream: the last event has no generated_text")
        return len(events) - 1

    def chat(self) -> int | None:
        body = _json(self.client.post(self.target.business_url + "/v1/chat/completions", json={
            "model": self.model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": self.max_tokens,
            "stream": False}), "/v1/chat/completions")
        choices = body.get("choices") or []
        _need(bool(choices) and isinstance(choices[0].get("message"), dict), "/v1/chat/completions: no choices")
        content = choices[0]["message"].get("content")
        _need(isinstance(content, str) and content != "", "/v1/chat/completions: empty content")
        _need(choices[0].get("finish_reason") in ("stop", "length"), "/v1/chat/completions: bad finish_reason")
        return self._usage(body, "/v1/chat/completions")

    def chat_stream(self) -> int | None:
        events = self._sse("/v1/chat/completions", {
            "model": self.model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": self.max_tokens,
            "stream": True}, done_marker=True)
        _need(events[-1] == "[DONE]", "/v1/chat/completions stream: not terminated by data: [DONE]")
        chunks = events[:-1]
        _need(all(c.get("object") == "chat.completion.chunk" for c in chunks), "/v1/chat/completions stream: a chunk "
              "is not chat.completion.chunk")
        text = "".join(str(c["choices"][0].get("delta", {}).get("content") or "") for c in chunks if c.get("choices"))
        _need(text != "", "/v1/chat/completions stream: empty content")
        finish = [c["choices"][0].get("finish_reason") for c in chunks if c.get("choices")]
        _need(finish[-1] in ("stop", "length"), "/v1/chat/completions stream: no finish_reason in the last chunk")
        with_usage = [c for c in chunks if c.get("usage")]
        _need(bool(with_usage), "/v1/chat/completions stream: no usage")
        return self._usage(with_usage[-1], "/v1/chat/completions stream")

    def completions(self) -> int | None:
        body = _json(self.client.post(self.target.business_url + "/v1/completions", json={
            "model": self.model, "prompt": PROMPT, "max_tokens": self.max_tokens, "stream": False}),
            "/v1/completions")
        choices = body.get("choices") or []
        _need(bool(choices) and isinstance(choices[0].get("text"), str) and choices[0]["text"] != "",
              "/v1/completions: empty text")
        return self._usage(body, "/v1/completions")

    def metrics(self) -> int | None:
        if not self.target.metrics_url:
            raise _Skip("no metrics URL")
        response = self.client.get(self.target.metrics_url + "/metrics")
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

    def _sse(self, path: str, payload: dict[str, Any], done_marker: bool = False) -> list[Any]:
        events: list[Any] = []
        with self.client.stream("POST", self.target.business_url + path, json=payload) as response:
            if response.status_code != 200:
                response.read()
                raise CheckFailed(f"{path} answered {response.status_code}: {response.text[:300]}")
            for data in iter_sse_data(response):
                if data == "[DONE]":
                    events.append(data)
                    continue
                try:
                    events.append(json.loads(data))
                except ValueError:
                    raise CheckFailed(f"{path}: an SSE event is not JSON: {data[:120]!r}") from None
        if not done_marker:
            _need(all(isinstance(e, dict) for e in events), f"{path}: unexpected [DONE]")
        _need(bool(events), f"{path}: no SSE events")
        return events

    def expect(self, cases: list[dict[str, Any]]) -> list[CheckResult]:
        results = []
        for index, case in enumerate(cases):
            name = f"expect[{index}]"
            start = time.perf_counter()
            try:
                body = _json(self.client.post(self.target.business_url + "/generate", json={
                    "inputs": case["prompt"], "stream": False, "parameters": {
                        "do_sample": False, "max_new_tokens": int(case.get("max_new_tokens", self.max_tokens))}}),
                    "/generate")
                text = body.get("generated_text")
                if "expect" in case:
                    _need(text == case["expect"], f"greedy output {text!r} != expected {case['expect']!r}")
                if "contains" in case:
                    _need(isinstance(text, str) and case["contains"] in text,
                          f"greedy output {text!r} does not contain {case['contains']!r}")
                results.append(CheckResult(name, "passed", _ms(start)))
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
            if client.get(target.management_url + "/health").status_code == 200:
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
              max_tokens: int = 16, timeout_s: float = 120.0) -> SmokeReport:
    names = checks or list(ALL_CHECKS)
    unknown = [n for n in names if n not in ALL_CHECKS]
    if unknown:
        raise PackError(f"--checks {unknown[0]!r}: expected some of {', '.join(ALL_CHECKS)}")
    cases = load_expectations(expect) if expect else []
    report = SmokeReport(target)
    with httpx.Client(timeout=timeout_s, trust_env=False) as client:
        if wait_s > 0:
            wait_until_ready(target, client, wait_s)  # still down afterwards: the checks below say so
        runner = SmokeRunner(target, client, max_tokens)
        for name in names:
            start = time.perf_counter()
            try:
                tokens = getattr(runner, name)()
                report.checks.append(CheckResult(name, "passed", _ms(start), tokens))
            except _Skip as exc:
                report.checks.append(CheckResult(name, "skipped", _ms(start), None, str(exc)))
            except CheckFailed as exc:
                report.checks.append(CheckResult(name, "failed", _ms(start), None, str(exc)))
            except httpx.HTTPError as exc:
                report.checks.append(CheckResult(name, "failed", _ms(start), None,
                                                 f"{type(exc).__name__}: {exc}"))
        report.checks += runner.expect(cases)
        if all(c.status == "failed" and ("Connect" in c.detail or "Timeout" in c.detail) for c in report.checks
               if c.name in ("health", "models")) and not _reachable(client, target):
            report.unreachable = True
    return report


def _reachable(client: httpx.Client, target: Target) -> bool:
    for url in (target.management_url, target.business_url):
        try:
            client.get(url + "/health", timeout=3)
            return True
        except httpx.HTTPError:
            continue
    return False
