"""The emulator's HTTP servers (starlette on uvicorn): business, management and metrics planes as in MindIE.

Bodies and stream events come from `mindie_pack.wire.format` (MindIE 2.3.0's shapes, or 3.0.0's where they differ:
ServiceState.release, from conf/emulator.json "mindie_version"; with their sources); this module decides status codes,
limits and the lifecycle (not ready -> ready -> stopping/draining).
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from mindie_pack.emulator import metrics as prom
from mindie_pack.emulator.engine import DoneEvent, Engine, TokenEvent
from mindie_pack.emulator.protocol import RequestError, error_response, generation_params, parse_json, prompt_text
from mindie_pack.runtime.api import GenerationParams
from mindie_pack.wire import format as wire

FAULT_ENV = "MINDIE_EMULATOR_FAULT"  # wrong-shape | error-status | empty-text | silent | keepalive-forever


@dataclass
class ServiceState:
    config: dict[str, Any]
    engine: Engine | None = None
    ready: bool = False
    stopped: bool = False
    stats: prom.Stats = field(default_factory=prom.Stats)
    started: int = field(default_factory=lambda: int(time.time()))
    idle: asyncio.Event | None = None  # set while no request is running (for /stopService's drain)
    abnormal: list[str] | None = None  # multi-node: the nodes lost (health then answers 500)
    release: str = wire.DEFAULT_RELEASE  # the MindIE version served (conf/emulator.json "mindie_version")

    def __post_init__(self) -> None:
        if wire.is_v3(self.release) and not self.stats.v3:
            self.stats = prom.Stats(v3=True)

    def _model(self) -> dict[str, Any]:
        return self.config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]

    @property
    def model_name(self) -> str:
        return str(self._model()["modelName"])

    @property
    def weight_path(self) -> str:
        return str(self._model().get("modelWeightPath", ""))

    @property
    def deploy(self) -> dict[str, Any]:
        return self.config["BackendConfig"]["ModelDeployConfig"]

    @property
    def max_seq_len(self) -> int:
        return int(self.deploy["maxSeqLen"])

    @property
    def max_input_len(self) -> int:
        """llm_manager_v2/impl/llm_manager_impl.cpp:1455-1457: min(maxInputTokenLen, maxSeqLen - 1)."""
        return min(int(self.deploy.get("maxInputTokenLen", self.max_seq_len)), self.max_seq_len - 1)

    @property
    def truncation(self) -> bool:
        return bool(self.deploy.get("truncation", False))

    @property
    def max_iter_times(self) -> int:
        return int(self.config["BackendConfig"]["ScheduleConfig"]["maxIterTimes"])

    def fault(self) -> str:
        return os.environ.get(FAULT_ENV, "")

    def busy(self, delta: int) -> None:
        self.stats.running += delta
        if self.idle is None:
            self.idle = asyncio.Event()
        if self.stats.running == 0:
            self.idle.set()
        else:
            self.idle.clear()


@dataclass
class Step:
    """One token of a generation, `done` set on the last one (the real server's final event carries it)."""
    token: TokenEvent | None
    done: DoneEvent | None


class Generation:
    """One request through the engine, with the bookkeeping for /metrics and the fault injection."""

    def __init__(self, state: ServiceState, text: str, params: GenerationParams) -> None:
        assert state.engine is not None
        self.state = state
        prompt = state.engine.encode(text)
        limit = state.max_input_len
        if len(prompt) > limit:
            if not state.truncation:  # llm_manager_impl.cpp:1382 -> 424 (single_llm_pnd_req_handler.cpp:101-105)
                raise RequestError(424, f"This model's maximum input ids length cannot be greater than {limit},"
                                   f"the input ids length is {len(prompt)}")
            prompt = prompt[:limit]  # llm_manager_impl.cpp:1448-1449 keeps the first g_truncLen ids
        self.prompt = prompt
        budget = max(1, state.max_seq_len - len(prompt))  # REACH_MAX_SEQ_LEN ends with "length"
        self.params = GenerationParams(**{**params.__dict__, "max_new_tokens": min(params.max_new_tokens, budget)})
        self.done: DoneEvent | None = None
        self.token_ids: list[int] = []

    async def _events(self) -> AsyncIterator[TokenEvent | DoneEvent]:
        assert self.state.engine is not None
        stats = self.state.stats
        stats.received += 1
        self.state.busy(+1)
        try:
            async for event in self.state.engine.stream(self.prompt, self.params):
                if isinstance(event, DoneEvent):
                    self.done = event
                    result = event.result
                    stats.success += 1
                    n = len(result.token_ids)
                    stats.prompt_tokens += len(result.prompt_token_ids)
                    stats.generation_tokens += n
                    stats.ttft.observe(event.prefill_s)
                    stats.e2e.observe(event.total_s)
                    stats.prompt_hist.observe(len(result.prompt_token_ids))
                    stats.generation_hist.observe(n)
                    if n > 1:
                        stats.tpot.observe((event.total_s - event.prefill_s) / (n - 1))
                    if self.state.fault() == "empty-text":
                        result.text = ""
                else:
                    self.token_ids.append(event.token_id)
                yield event
        except Exception:
            stats.failed += 1
            raise
        finally:
            self.state.busy(-1)

    async def steps(self) -> AsyncIterator[Step]:
        """Tokens as they come, the last one paired with the DoneEvent. A token is held back only when the engine
        cannot tell whether it is the last one (stop strings)."""
        held: TokenEvent | None = None
        async for event in self._events():
            if isinstance(event, TokenEvent):
                if held is not None:
                    yield Step(held, None)
                    held = None
                if event.last is False:
                    yield Step(event, None)
                else:
                    held = event
            else:
                yield Step(held, event)
                return

    async def run(self) -> DoneEvent:
        async for _ in self._events():
            pass
        assert self.done is not None
        return self.done


def _ms(seconds: float) -> int:
    return int(round(seconds * 1000))


def _decode_times(done: DoneEvent, token_times: list[float]) -> list[int]:
    return [_ms(b - a) for a, b in zip(token_times, token_times[1:], strict=False)]


def build_business_app(state: ServiceState) -> Starlette:
    async def guard(request: Request) -> dict[str, Any]:
        if state.stopped:  # sri/single_req_infer_interface_base.cpp:351-358 (no period)
            raise RequestError(503, "The service has been stopped")
        if not state.ready or state.engine is None:
            raise RequestError(503, "The service is not ready")
        fault = state.fault()
        if fault == "error-status":
            raise RequestError(500, "Failed to get engine response (injected fault).")
        if fault == "silent":  # accepts the request and never answers (client timeout tests)
            await asyncio.Event().wait()
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

    def stream_response(chunks: AsyncIterator[bytes]) -> Response:
        async def body() -> AsyncIterator[bytes]:
            if state.fault() == "keepalive-forever":  # streams SSE comments and never an event
                while True:
                    yield b": keep-alive\n\n"
                    await asyncio.sleep(0.2)
            async for chunk in chunks:
                yield chunk
        return StreamingResponse(body(), media_type=wire.STREAM_CONTENT_TYPE)

    async def models(request: Request) -> Response:
        return Response(wire.models_list_text(state.model_name, state.weight_path), media_type="application/json")

    async def model(request: Request) -> Response:
        name = request.path_params["name"]
        if name != state.model_name:  # http_handler.cpp GetRequestModelConfig
            return error_response(404, f"Model {name} not found.")
        return JSONResponse(wire.model_card(name, state.started))

    async def generate(request: Request) -> Response:
        body = await guard(request)
        if isinstance(body.get("inputs"), str):
            return await _tgi(body, stream=False)  # TGI through /generate is never streamed
        if isinstance(body.get("prompt"), str):
            return await _vllm(body)
        raise RequestError(422, wire.GENERATE_DISPATCH_ERROR)

    async def general_tgi(request: Request) -> Response:
        """POST /: "general TGI", which honours `stream` (http_handler.cpp:483-504, :1509-1516;
        SingleReqGeneralTgiTextInferInterface derives from the TGI interface, so the shapes are TGI's)."""
        body = await guard(request)
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            raise RequestError(422, "Input validation error: stream must be bool")
        return await _tgi(body, stream=stream)

    async def generate_stream(request: Request) -> Response:
        body = await guard(request)
        return await _tgi(body, stream=True)

    def _tgi_params(body: dict[str, Any]) -> tuple[str, dict[str, Any], GenerationParams]:
        text = prompt_text(body.get("inputs"), "inputs")
        raw = body.get("parameters") or {}
        if not isinstance(raw, dict):
            raise RequestError(422, "value type of \"parameters\" is invalid")
        params = generation_params(raw, max_tokens_key="max_new_tokens", default_max=wire.MAX_NEW_TOKENS_DEFAULT,
                                   allow_zero_temperature=False)
        return text, raw, params

    async def _tgi(body: dict[str, Any], *, stream: bool) -> Response:
        text, raw, params = _tgi_params(body)
        details = bool(raw.get("details")) or bool(raw.get("decoder_input_details"))
        gen = Generation(state, text, params)
        if not stream:
            done = await gen.run()
            if state.fault() == "wrong-shape":
                return JSONResponse({"generated": done.result.text})
            result = done.result
            return JSONResponse(wire.tgi_body(result.text, details=details, prompt_tokens=len(gen.prompt),
                                              finish_reason=wire.tgi_finish_reason(result.finish_reason),
                                              token_ids=result.token_ids, seed=params.seed))

        async def events() -> AsyncIterator[bytes]:
            async for step in gen.steps():
                final = None
                if step.done is not None:
                    result = step.done.result
                    final = {"generated_text": result.text, "details": wire.tgi_stream_details(
                        prompt_tokens=len(gen.prompt), finish_reason=wire.tgi_finish_reason(result.finish_reason),
                        generated_tokens=len(result.token_ids), seed=params.seed) if details else None}
                if step.token is None:  # the engine ended without a token to attach the end to
                    if final is not None:
                        yield wire.sse({"token": None, **final})
                    continue
                yield wire.sse(wire.tgi_event(step.token.token_id, step.token.text, final=final))
        return stream_response(events())

    async def _vllm(body: dict[str, Any]) -> Response:
        text = prompt_text(body.get("prompt"), "prompt")
        params = generation_params(body, max_tokens_key="max_tokens", default_max=state.max_iter_times,
                                   allow_zero_temperature=True)
        gen = Generation(state, text, params)
        if not body.get("stream"):
            done = await gen.run()
            return JSONResponse(wire.vllm_body(text, done.result.text))

        async def chunks() -> AsyncIterator[bytes]:
            async for step in gen.steps():
                if step.token is not None:
                    yield wire.vllm_chunk(step.token.text)
        return stream_response(chunks())

    async def infer(request: Request) -> Response:
        body = await guard(request)
        text, raw, params = _tgi_params(body)
        details = bool(raw.get("details"))
        gen = Generation(state, text, params)
        if not body.get("stream"):
            done = await gen.run()
            result = done.result
            return JSONResponse(wire.infer_body(result.text, details=details,
                                                finish_reason=wire.tgi_finish_reason(result.finish_reason),
                                                token_ids=result.token_ids, seed=params.seed))

        async def events() -> AsyncIterator[bytes]:
            last = None
            async for step in gen.steps():
                token = step.token
                now = token.elapsed_s if token is not None else (step.done.total_s if step.done else 0.0)
                prefill, decode = (_ms(now), None) if last is None else (None, _ms(now - last))
                last = now
                final = None
                if step.done is not None:
                    result = step.done.result
                    final = {"generated_text": result.text, "details": wire.infer_stream_details(
                        finish_reason=wire.tgi_finish_reason(result.finish_reason),
                        generated_tokens=len(result.token_ids), seed=params.seed) if details else None}
                token_id = token.token_id if token is not None else (gen.token_ids[-1] if gen.token_ids else 0)
                yield wire.sse(wire.infer_event(token_id, token.text if token else "", prefill_ms=prefill,
                                                decode_ms=decode, final=final))
        return stream_response(events())

    def _check_model(body: dict[str, Any]) -> None:
        """sri/single_req_vllm_openai_infer_interface.cpp:597-619: both are 422 Input Validation Error."""
        name = body.get("model")
        if name is None:
            raise RequestError(422, "Request contains not model or model null")
        if not isinstance(name, str):
            raise RequestError(422, "Request param model must be string")
        if not name:
            raise RequestError(422, "Request param model must be not empty")
        if name != state.model_name:
            raise RequestError(422, "Model not found")

    async def chat(request: Request) -> Response:
        body = await guard(request)
        _check_model(body)
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages or not all(isinstance(m, dict) for m in messages):
            raise RequestError(422, "Input validation error: messages must be a non-empty list of objects")
        assert state.engine is not None
        text = state.engine.chat_prompt([{"role": str(m.get("role")), "content": str(m.get("content"))}
                                         for m in messages])
        params = generation_params(body, max_tokens_key="max_tokens", default_max=state.max_iter_times,
                                   allow_zero_temperature=True)
        return await _openai(body, text, params, chat=True)

    async def completions(request: Request) -> Response:
        body = await guard(request)
        _check_model(body)
        text = prompt_text(body.get("prompt"), "prompt")
        params = generation_params(body, max_tokens_key="max_tokens", default_max=state.max_iter_times,
                                   allow_zero_temperature=True)
        return await _openai(body, text, params, chat=False)

    async def _openai(body: dict[str, Any], text: str, params: GenerationParams, *, chat: bool) -> Response:
        gen = Generation(state, text, params)
        ident = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex[:24]}"
        created = int(time.time())
        model_name = state.model_name
        if not body.get("stream"):
            token_times: list[float] = []
            async for event in gen._events():
                if isinstance(event, TokenEvent):
                    token_times.append(event.elapsed_s)
            done = gen.done
            assert done is not None
            result = done.result
            n = len(result.token_ids)
            perf = wire.openai_perf_fields(state.release)
            usage = {"prompt_tokens": len(gen.prompt), "completion_tokens": n,
                     "batch_size": [1] * n if perf else None, "queue_wait_time": [0] * n if perf else None}
            reason = wire.openai_finish_reason(result.finish_reason)
            if chat:
                return JSONResponse(wire.chat_body(ident, created, model_name, result.text, reason, **usage,
                                                   prefill_ms=_ms(done.prefill_s) if perf else None,
                                                   decode_ms=_decode_times(done, token_times) if perf else None))
            return JSONResponse(wire.completion_body(ident, created, model_name, result.text, reason, **usage))

        build = wire.chat_chunk if chat else wire.completion_chunk

        async def events() -> AsyncIterator[bytes]:
            if chat:  # the first chunk: role and empty content
                yield wire.sse(wire.chat_chunk(ident, created, model_name, ""))
            async for step in gen.steps():
                finish = None
                if step.done is not None:
                    result = step.done.result
                    n = len(result.token_ids)
                    perf = wire.openai_perf_fields(state.release)
                    finish = {"finish_reason": wire.openai_finish_reason(result.finish_reason),
                              "usage": wire.usage(len(gen.prompt), n, [1] * n if perf else None,
                                                  [0] * n if perf else None)}
                piece = step.token.text if step.token is not None else ""
                yield wire.sse(build(ident, created, model_name, piece, finish=finish))
            yield wire.DONE
        return stream_response(events())

    routes = [Route("/v1/models", handler(models)), Route("/v1/models/{name}", handler(model)),
              Route("/generate", handler(generate), methods=["POST"]),
              Route("/", handler(general_tgi), methods=["POST"]),
              Route("/generate_stream", handler(generate_stream), methods=["POST"]),
              Route("/infer", handler(infer), methods=["POST"]),
              Route("/v1/chat/completions", handler(chat), methods=["POST"]),
              Route("/v1/completions", handler(completions), methods=["POST"])]
    return Starlette(routes=routes)


def _kill_own_group() -> None:
    if os.getpgrp() == os.getpid():  # only when the daemon leads its own group (it calls setpgrp at start)
        os.killpg(os.getpgrp(), signal.SIGKILL)


def build_management_app(state: ServiceState) -> Starlette:
    def unhealthy(*, wrapped: bool = True) -> Response | None:
        """http_handler.cpp:440-452 CheckHealthAndStop: stopped -> 503 with a body; not healthy -> 503, no body."""
        if state.stopped:
            return error_response(503, "The service has been stopped.")
        if not state.ready:
            return Response(status_code=503)
        if state.abnormal:
            # HandleGetHealthStatus (http_handler.cpp:1227-1262): 500 whose error is itself a JSON string, encoded
            # by JsonParse::EncodeAbnormalNodeInfo (parse_protocol.cpp:435-447); unwrapped: that JSON is the body
            nodes = wire.abnormal_nodes_text(state.abnormal)
            if wrapped:
                return error_response(500, nodes)
            return Response(nodes, status_code=500, media_type="application/json")
        return None

    async def health(request: Request) -> Response:
        # /health, /v2/health/live and /v2/health/ready share the same logic in 2.3.0 (http_handler.cpp:567-627);
        # 3.0.0 answers live/ready without the error wrapper (wire.live_ready_abnormal_is_wrapped)
        wrapped = request.url.path == "/health" or wire.live_ready_abnormal_is_wrapped(state.release)
        return unhealthy(wrapped=wrapped) or Response(status_code=200)

    async def timed(request: Request) -> Response:
        """http_handler.cpp:539-560: stopped -> 200 healthy; wait time in [1, 600] s (CheckWaitTime :401-437)."""
        if state.stopped:
            return JSONResponse({"status": "healthy"})
        if not state.ready:
            return Response(status_code=503)
        seconds = request.path_params.get("seconds")
        limit = int(seconds) if seconds is not None else 10
        if not 1 <= limit <= 600:
            return error_response(404, "Wait time should be in range of [1, 600], input is not valid")
        try:
            await asyncio.wait_for(Generation(state, "health probe", GenerationParams(max_new_tokens=1)).run(), limit)
        except TimeoutError:
            return error_response(500, wire.timed_timeout_message(state.release, limit))
        except Exception as exc:  # noqa: BLE001
            return error_response(500, str(exc))
        return JSONResponse({"status": "healthy"})

    async def stop_service(request: Request) -> Response:
        """http_handler.cpp:851-867: set the stop flag, wait until no request runs, then 200 with no body; a second
        call is 500 with no body."""
        if state.stopped:
            return Response(status_code=500)
        state.stopped = True
        if request.query_params.get("mode") == "Force":
            # http_handler.cpp:814-830 ForceStop: answer at once, SIGKILL the daemon's own group after 5 s
            asyncio.get_running_loop().call_later(5.0, _kill_own_group)
            return Response(status_code=200)
        if state.stats.running and state.idle is not None:
            await state.idle.wait()
        return Response(status_code=200)

    async def info(request: Request) -> Response:
        """sri/parse_protocol.cpp:300-331."""
        deploy = state.deploy
        schedule = state.config["BackendConfig"]["ScheduleConfig"]
        dtype = state.engine.torch_dtype if state.engine else None
        return JSONResponse({"docker_label": None, "max_batch_total_tokens": schedule["maxPrefillTokens"],
                             "max_best_of": 1, "max_concurrent_requests": schedule["maxBatchSize"],
                             "max_stop_sequences": None, "max_waiting_tokens": None, "sha": None,
                             "validation_workers": None, "version": "mindie-pack emulator",
                             "waiting_served_ratio": None,
                             "models": [{"model_device_type": "npu", "model_dtype": dtype, "model_id": state.model_name,
                                         "model_pipeline_tag": "text-generation", "model_sha": None,
                                         "max_total_tokens": deploy["maxSeqLen"]}],
                             "max_input_length": deploy["maxInputTokenLen"]})

    routes = [Route("/health", health), Route("/v2/health/live", health), Route("/v2/health/ready", health),
              Route("/health/timed", timed), Route("/health/timed-{seconds:int}", timed),
              Route("/stopService", stop_service), Route("/info", info)]
    return Starlette(routes=routes)


def build_metrics_app(state: ServiceState) -> Starlette:
    async def metrics(request: Request) -> Response:
        if os.environ.get("MIES_SERVICE_MONITOR_MODE") != "1":  # prometheus_metrics.cpp:41-46
            return error_response(500, "Environment variable MIES_SERVICE_MONITOR_MODE is not set.")
        return Response(prom.render(state.stats, state.model_name),
                        media_type=wire.metrics_content_type(state.release))

    return Starlette(routes=[Route("/metrics", metrics)])
