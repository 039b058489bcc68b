"""The emulator's HTTP servers (starlette on uvicorn): business, management and metrics planes as in MindIE."""

from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from mindie_pack.emulator.engine import DoneEvent, Engine, TokenEvent
from mindie_pack.emulator.protocol import RequestError, error_response, generation_params, parse_json, prompt_text
from mindie_pack.runtime.api import GenerationParams

FAULT_ENV = "MINDIE_EMULATOR_FAULT"  # wrong-shape | error-status | empty-text (for smoke tests of clients)


@dataclass
class Stats:
    received: int = 0
    success: int = 0
    failed: int = 0
    running: int = 0
    prompt_tokens: int = 0
    generation_tokens: int = 0
    ttft_sum: float = 0.0
    tpot_sum: float = 0.0


@dataclass
class ServiceState:
    engine: Engine
    config: dict[str, Any]
    ready: bool = False
    stopped: bool = False
    stats: Stats = field(default_factory=Stats)

    @property
    def model_name(self) -> str:
        return str(self._model()["modelName"])

    def _model(self) -> dict[str, Any]:
        return self.config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]

    @property
    def max_seq_len(self) -> int:
        return int(self.config["BackendConfig"]["ModelDeployConfig"]["maxSeqLen"])

    @property
    def max_iter_times(self) -> int:
        return int(self.config["BackendConfig"]["ScheduleConfig"]["maxIterTimes"])

    def fault(self) -> str:
        return os.environ.get(FAULT_ENV, "")


def _sse(data: Any) -> bytes:
    return f"data: {data if isinstance(data, str) else json.dumps(data, ensure_ascii=False)}\n\n".encode()


class Generation:
    """One request through the engine, with the bookkeeping for /metrics and the fault injection."""

    def __init__(self, state: ServiceState, text: str, params: GenerationParams) -> None:
        self.state = state
        self.prompt = state.engine.encode(text)
        budget = max(1, state.max_seq_len - len(self.prompt))
        if len(self.prompt) >= state.max_seq_len:
            raise RequestError(422, f"Input validation error: the input has {len(self.prompt)} tokens, maxSeqLen is "
                               f"{state.max_seq_len}")
        self.params = GenerationParams(**{**params.__dict__, "max_new_tokens": min(params.max_new_tokens, budget)})
        self.done: DoneEvent | None = None

    async def events(self) -> AsyncIterator[TokenEvent | DoneEvent]:
        stats = self.state.stats
        stats.received += 1
        stats.running += 1
        try:
            async for event in self.state.engine.stream(self.prompt, self.params):
                if isinstance(event, DoneEvent):
                    self.done = event
                    result = event.result
                    stats.success += 1
                    stats.prompt_tokens += len(result.prompt_token_ids)
                    stats.generation_tokens += len(result.token_ids)
                    stats.ttft_sum += event.prefill_s
                    if len(result.token_ids) > 1:
                        stats.tpot_sum += (event.total_s - event.prefill_s) / (len(result.token_ids) - 1)
                    if self.state.fault() == "empty-text":
                        result.text = ""
                yield event
        except Exception:
            stats.failed += 1
            raise
        finally:
            stats.running -= 1

    async def run(self) -> DoneEvent:
        async for _ in self.events():
            pass
        assert self.done is not None
        return self.done


def _finish(reason: str) -> str:
    return "stop" if reason in ("eos", "stop") else "length"


def build_business_app(state: ServiceState) -> Starlette:
    async def guard(request: Request) -> dict[str, Any]:
        if state.stopped:
            raise RequestError(503, "The service has been stopped.")
        if state.fault() == "error-status":
            raise RequestError(500, "Failed to get engine response (injected fault).")
        return parse_json(await request.body())

    def handler(func: Any) -> Any:
        async def wrapped(request: Request) -> Response:
            try:
                return await func(request)
            except RequestError as exc:
                return exc.response()
            except Exception as exc:  # noqa: BLE001 - every engine failure is a 500 with MindIE's body
                return error_response(500, f"Incomplete Generation: {exc}")
        return wrapped

    async def models(request: Request) -> Response:
        name = state.model_name
        root = str(state.engine.model_dir.name) if state.engine.model_dir else name
        return JSONResponse({"object": "list", "data": [{"id": name, "object": "model", "created": int(time.time()),
                                                         "owned_by": "MindIE Server", "root": root}]})

    async def generate(request: Request) -> Response:
        body = await guard(request)
        if "inputs" in body:
            return await _tgi(body, stream=bool(body.get("stream", False)))
        if "prompt" in body:
            return await _vllm(body)
        raise RequestError(422, "`inputs` or `prompt` must be necessary and data type must be string, and "
                           "length in (0, 4194304]")

    async def generate_stream(request: Request) -> Response:
        body = await guard(request)
        return await _tgi(body, stream=True)

    def _tgi_details(done: DoneEvent, params: GenerationParams) -> dict[str, Any]:
        result = done.result
        return {"prompt_tokens": len(result.prompt_token_ids), "finish_reason": _finish(result.finish_reason),
                "generated_tokens": len(result.token_ids), "seed": params.seed,
                "tokens": [{"id": t, "text": state.engine.decode([t]), "logprob": None, "special": False}
                           for t in result.token_ids], "prefill": []}

    async def _tgi(body: dict[str, Any], *, stream: bool) -> Response:
        text = prompt_text(body.get("inputs"), "inputs")
        raw = body.get("parameters") or {}
        params = generation_params(raw, max_tokens_key="max_new_tokens", default_max=min(state.max_iter_times, 20))
        gen = Generation(state, text, params)
        if not stream:
            done = await gen.run()
            if state.fault() == "wrong-shape":
                return JSONResponse({"generated": done.result.text})
            out: dict[str, Any] = {"generated_text": done.result.text}
            if raw.get("details"):
                out["details"] = _tgi_details(done, params)
            return JSONResponse(out)

        async def events() -> AsyncIterator[bytes]:
            async for event in gen.events():
                if isinstance(event, TokenEvent):
                    yield _sse({"token": {"id": event.token_id, "text": event.text, "logprob": None, "special": False},
                                "generated_text": None, "details": None})
                else:
                    yield _sse({"token": None, "generated_text": event.result.text,
                                "details": _tgi_details(event, params)})
        return StreamingResponse(events(), media_type="text/event-stream")

    async def _vllm(body: dict[str, Any]) -> Response:
        text = prompt_text(body.get("prompt"), "prompt")
        params = generation_params(body, max_tokens_key="max_tokens", default_max=min(state.max_iter_times, 16))
        gen = Generation(state, text, params)
        if not body.get("stream"):
            done = await gen.run()
            return JSONResponse({"text": [text + done.result.text]})

        async def chunks() -> AsyncIterator[bytes]:  # legacy vLLM api_server: JSON objects separated by \0
            async for event in gen.events():
                if isinstance(event, TokenEvent):
                    yield json.dumps({"text": [event.text]}, ensure_ascii=False).encode() + b"\0"
        return StreamingResponse(chunks(), media_type="application/json")

    async def infer(request: Request) -> Response:
        body = await guard(request)
        text = prompt_text(body.get("inputs"), "inputs")
        raw = body.get("parameters") or {}
        params = generation_params(raw, max_tokens_key="max_new_tokens", default_max=min(state.max_iter_times, 20))
        gen = Generation(state, text, params)

        def details(done: DoneEvent) -> dict[str, Any]:
            return {"finish_reason": _finish(done.result.finish_reason), "generated_tokens": len(done.result.token_ids),
                    "generated_token_ids": done.result.token_ids, "seed": params.seed,
                    "prompt_tokens": len(done.result.prompt_token_ids)}

        if not body.get("stream"):
            done = await gen.run()
            return JSONResponse({"generated_text": done.result.text, "details": details(done)})

        async def events() -> AsyncIterator[bytes]:
            last = 0.0
            async for event in gen.events():
                if isinstance(event, TokenEvent):
                    first = last == 0.0
                    yield _sse({"prefill_time": round(event.elapsed_s * 1000, 3) if first else None,
                                "decode_time": None if first else round((event.elapsed_s - last) * 1000, 3),
                                "token": {"id": event.token_id, "text": event.text}})
                    last = event.elapsed_s
                else:
                    yield _sse({"prefill_time": None, "decode_time": None, "token": {"id": None, "text": None},
                                "generated_text": event.result.text, "details": details(event)})
        return StreamingResponse(events(), media_type="text/event-stream")

    def _check_model(body: dict[str, Any]) -> None:
        if body.get("model") != state.model_name:
            raise RequestError(404, f"Model {body.get('model')} not found.")

    def _usage(done: DoneEvent) -> dict[str, int]:
        prompt, completion = len(done.result.prompt_token_ids), len(done.result.token_ids)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    async def chat(request: Request) -> Response:
        body = await guard(request)
        _check_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise RequestError(422, "Input validation error: messages must be a non-empty list of objects")
        text = state.engine.chat_prompt([{"role": str(m.get("role")), "content": str(m.get("content"))}
                                         for m in messages])
        params = generation_params(body, max_tokens_key="max_tokens", default_max=min(state.max_iter_times, 16))
        return await _openai(body, text, params, chat=True)

    async def completions(request: Request) -> Response:
        body = await guard(request)
        _check_model(body)
        text = prompt_text(body.get("prompt"), "prompt")
        params = generation_params(body, max_tokens_key="max_tokens", default_max=min(state.max_iter_times, 16))
        return await _openai(body, text, params, chat=False)

    async def _openai(body: dict[str, Any], text: str, params: GenerationParams, *, chat: bool) -> Response:
        gen = Generation(state, text, params)
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        kind = "chat.completion" if chat else "text_completion"
        if not body.get("stream"):
            done = await gen.run()
            choice: dict[str, Any] = {"index": 0, "logprobs": None, "finish_reason": _finish(done.result.finish_reason)}
            if chat:
                choice["message"] = {"role": "assistant", "content": done.result.text, "tool_calls": []}
            else:
                choice.update(text=done.result.text, stop_reason=None)
            return JSONResponse({"id": ident, "object": kind, "created": created, "model": state.model_name,
                                 "choices": [choice], "usage": _usage(done),
                                 "prefill_time": round(done.prefill_s * 1000, 3)})

        def chunk(delta: dict[str, Any] | str, finish: str | None, usage: dict[str, int] | None = None) -> bytes:
            choice = {"index": 0, "logprobs": None, "finish_reason": finish}
            choice.update({"delta": delta} if chat else {"text": delta, "stop_reason": None})
            data: dict[str, Any] = {"id": ident, "object": f"{kind}.chunk" if chat else kind, "created": created,
                                    "model": state.model_name, "choices": [choice]}
            if usage is not None:
                data["usage"] = usage
            return _sse(data)

        async def events() -> AsyncIterator[bytes]:
            if chat:
                yield chunk({"role": "assistant", "content": ""}, None)
            async for event in gen.events():
                if isinstance(event, TokenEvent):
                    yield chunk({"content": event.text} if chat else event.text, None)
                else:
                    yield chunk({} if chat else "", _finish(event.result.finish_reason), _usage(event))
            yield _sse("[DONE]")
        return StreamingResponse(events(), media_type="text/event-stream")

    routes = [Route("/v1/models", handler(models)), Route("/generate", handler(generate), methods=["POST"]),
              Route("/", handler(generate), methods=["POST"]),
              Route("/generate_stream", handler(generate_stream), methods=["POST"]),
              Route("/infer", handler(infer), methods=["POST"]),
              Route("/v1/chat/completions", handler(chat), methods=["POST"]),
              Route("/v1/completions", handler(completions), methods=["POST"])]
    return Starlette(routes=routes)


def build_management_app(state: ServiceState) -> Starlette:
    async def health(request: Request) -> Response:
        if state.stopped:
            return error_response(503, "The service has been stopped.")
        return Response(status_code=200 if state.ready else 503)

    async def live(request: Request) -> Response:
        return Response(status_code=200) if not state.stopped else JSONResponse({"message": "Service is abnormal"},
                                                                                 status_code=500)

    async def ready(request: Request) -> Response:
        if state.stopped or not state.ready:
            return Response(status_code=503)
        return Response(status_code=200)

    async def timed(request: Request) -> Response:
        if not state.ready:
            return Response(status_code=503)
        seconds = request.path_params.get("seconds")
        limit = float(seconds) if seconds else 10.0
        try:
            await asyncio.wait_for(Generation(state, "health probe", GenerationParams(max_new_tokens=1)).run(), limit)
        except TimeoutError:
            return error_response(500, f"Virtual inference timed out after {limit:g} s.")
        except Exception as exc:  # noqa: BLE001
            return error_response(500, str(exc))
        return JSONResponse({"status": "healthy"})

    async def stop_service(request: Request) -> Response:
        if state.stopped:
            return error_response(500, "The service is already stopping.")
        state.stopped = True  # like the real daemon: refuse new work; the process ends on SIGTERM
        return Response(status_code=200)

    async def info(request: Request) -> Response:
        deploy = state.config["BackendConfig"]["ModelDeployConfig"]
        schedule = state.config["BackendConfig"]["ScheduleConfig"]
        return JSONResponse({"docker_label": None, "max_batch_total_tokens": schedule["maxPrefillTokens"],
                             "max_best_of": 1, "max_concurrent_requests": schedule["maxBatchSize"],
                             "version": "mindie-pack emulator", "max_input_length": deploy["maxInputTokenLen"],
                             "models": [{"model_device_type": "npu", "model_dtype": state.engine.torch_dtype,
                                         "model_id": state.model_name, "model_pipeline_tag": "text-generation",
                                         "max_total_tokens": deploy["maxSeqLen"]}]})

    routes = [Route("/health", health), Route("/v2/health/live", live), Route("/v2/health/ready", ready),
              Route("/health/timed", timed), Route("/health/timed-{seconds:int}", timed),
              Route("/stopService", stop_service), Route("/info", info)]
    return Starlette(routes=routes)


def build_metrics_app(state: ServiceState) -> Starlette:
    async def metrics(request: Request) -> Response:
        if os.environ.get("MIES_SERVICE_MONITOR_MODE") != "1":
            return error_response(500, "Environment variable MIES_SERVICE_MONITOR_MODE is not set.")
        s, label = state.stats, f'model_name="{state.model_name}"'
        done = max(s.success, 1)
        lines = []
        for name, kind, value in (
            ("request_received_total", "counter", s.received), ("request_success_total", "counter", s.success),
            ("request_failed_total", "counter", s.failed), ("num_requests_running", "gauge", s.running),
            ("num_requests_waiting", "gauge", 0), ("prompt_tokens_total", "counter", s.prompt_tokens),
            ("generation_tokens_total", "counter", s.generation_tokens),
            ("time_to_first_token_seconds", "gauge", round(s.ttft_sum / done, 6)),
            ("time_per_output_token_seconds", "gauge", round(s.tpot_sum / done, 6)),
        ):
            lines += [f"# HELP {name} {name.replace('_', ' ')}", f"# TYPE {name} {kind}", f"{name}{{{label}}} {value}"]
        return PlainTextResponse("\n".join(lines) + "\n")

    return Starlette(routes=[Route("/metrics", metrics)])
