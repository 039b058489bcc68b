"""Request parsing shared by the emulator's endpoints: MindIE's parameter names, defaults and error bodies."""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

from mindie_pack.runtime.api import GenerationParams
from mindie_pack.wire.format import ERROR_TYPES, MAX_INT32, error_body

FLOAT_MAX = 3.4028234663852886e38  # src/server/endpoint/endpoint_def.h:95 MAX_TEMPERATURE = float max

__all__ = ["ERROR_TYPES", "RequestError", "error_response", "generation_params", "parse_json", "prompt_text"]


class RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message)


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse(error_body(status, message), status_code=status)


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw or b"{}")
    except json.JSONDecodeError:
        # sri/single_req_infer_interface_base.cpp:339-347
        raise RequestError(422, "Failed to parse request context to json") from None
    if not isinstance(body, dict):
        raise RequestError(422, "Input validation error: body must be a JSON object")
    return body


def _number(params: dict[str, Any], key: str, kind: type, low: float | None = None, high: float | None = None,
            low_open: bool = False) -> Any:
    value = params.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float) if kind is float else int):
        raise RequestError(422, f"Input validation error: param {key} must be {kind.__name__}")
    if (low is not None and (value <= low if low_open else value < low)) or (high is not None and value > high):
        # wording of src/server/endpoint/utils/infer_param.cpp (e.g. :563 "must be in (0,2147483647], got X.")
        top = "" if high is None else (f"{high:g}" if isinstance(high, float) else str(high))
        bounds = f"{'(' if low_open else '['}{low},{top}]"
        raise RequestError(422, f"Parameter {key} must be in {bounds}, got {value}.")
    return value


def _stops(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return (value,)
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise RequestError(422, "Input validation error: param stop must be string or list[string]")


def generation_params(params: dict[str, Any], *, max_tokens_key: str, default_max: int,
                      allow_zero_temperature: bool) -> GenerationParams:
    """Parameters as the real server reads them. `max_new_tokens`/`max_tokens` are honoured up to int32
    (src/server/endpoint/utils/infer_param.cpp:437, :562); the default is 20 for TGI and /infer and maxIterTimes for
    OpenAI and vLLM (`default_max`, see mindie_pack.wire.format). temperature 0 is refused by TGI and /infer
    (AssignTemperature(..., false): infer_param.cpp:414, sri/single_req_tgi_text_infer_interface.cpp:207,
    sri/single_req_self_develop_infer_interface.cpp:177) and allowed by OpenAI (greedy)."""
    max_new = _number(params, max_tokens_key, int, 0, MAX_INT32, low_open=True)
    temperature = _number(params, "temperature", float, 0.0, FLOAT_MAX, low_open=not allow_zero_temperature)
    top_k = _number(params, "top_k", int, 0, None)
    top_p = _number(params, "top_p", float, 0, 1, low_open=True)
    seed = _number(params, "seed", int, 0, 2**63 - 1)
    penalty = _number(params, "repetition_penalty", float, 0, None, low_open=True)
    do_sample = params.get("do_sample")
    if do_sample is None:
        do_sample = bool(temperature) or bool(top_k and top_k > 1) or (top_p is not None and top_p < 1)
    if not isinstance(do_sample, bool):
        raise RequestError(422, "Input validation error: param do_sample must be bool")
    return GenerationParams(
        max_new_tokens=max_new or default_max, do_sample=do_sample and (temperature or 1.0) > 0,
        temperature=temperature or 1.0, top_k=top_k or 0, top_p=top_p or 1.0, seed=seed,
        repetition_penalty=penalty or 1.0, stop=_stops(params.get("stop")),
        ignore_eos=bool(params.get("ignore_eos", False)),
    )


def prompt_text(value: Any, field: str) -> str:
    if not isinstance(value, str) or not value:
        raise RequestError(422, f"`{field}` must be necessary and data type must be string, and length in "
                           "(0, 4194304]")
    if len(value) > 4194304:
        raise RequestError(422, "Message len not in (0, 4194304]")
    return value
