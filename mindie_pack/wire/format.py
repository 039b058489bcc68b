"""The shapes of MindIE 2.3.0's HTTP bodies and stream events, as facts read from its source.

Every builder cites where the real server builds the same thing. Paths are relative to MindIE-LLM commit 40fb0630
(= MindIE 2.3.0); `sri/` stands for `src/server/endpoint/single_req_infer_interface/`, `http_handler.cpp` for
`src/server/endpoint/http_wrapper/http_handler.cpp`. Key order follows the real (nlohmann ordered_json keeps
insertion order) so transcripts compare byte for byte where it matters.
"""

from __future__ import annotations

import json
from typing import Any, Literal

# src/server/endpoint/endpoint_def.h:75 MAX_NEW_TOKENS_DFT = 20 (TGI /generate, /generate_stream, /infer).
MAX_NEW_TOKENS_DEFAULT = 20
# src/server/endpoint/endpoint_def.h:98 MAX_INT32_VALUE; max_new_tokens / max_tokens in (0, MAX_INT32]
# (src/server/endpoint/utils/infer_param.cpp:437, :562).
MAX_INT32 = 2**31 - 1
# OpenAI chat/completions and vLLM /generate default max_tokens to ScheduleConfig.maxIterTimes
# (src/server/endpoint/utils/infer_param.cpp:425-427).

# src/server/endpoint/utils/http_rest_resource.h:33-39 (status -> error_type); body built at
# src/server/endpoint/utils/http_rest_resource.cpp:163-168 as {"error": ..., "error_type": ...}.
ERROR_TYPES = {400: "Bad Request", 404: "NotFoundError", 422: "Input Validation Error", 424: "Generation Error",
               500: "Incomplete Generation", 503: "Service Unavailable"}

# Every stream is text/event-stream, the vLLM \0 stream included (http_rest_resource.cpp:183).
STREAM_CONTENT_TYPE = "text/event-stream"

Api = Literal["tgi", "infer", "vllm", "openai-chat", "openai-completions"]
API_PATHS: dict[str, str] = {"tgi": "/generate_stream", "infer": "/infer", "vllm": "/generate",
                             "openai-chat": "/v1/chat/completions", "openai-completions": "/v1/completions"}


def error_body(status: int, message: str) -> dict[str, str]:
    return {"error": message, "error_type": ERROR_TYPES.get(status, "Bad Request")}


# /generate without `inputs` or `prompt`: 422 whose `error` is itself a JSON string (http_handler.cpp:459-466).
GENERATE_DISPATCH_ERROR = ('{"Error": "`inputs` or `prompt` must be necessary and data type must be string. '
                           'Additionally, the request body must be valid json", "error_type": "validation"}')


def sse(data: dict[str, Any] | str) -> bytes:
    """One `data: ...\\n\\n` frame (e.g. sri/single_req_tgi_text_infer_interface.cpp:366,382)."""
    text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    return f"data: {text}\n\n".encode()


DONE = sse("[DONE]")  # sri/single_req_vllm_openai_infer_interface.cpp:1188; ..._completions_...cpp:658


def tgi_finish_reason(reason: str) -> str:
    """TGI and /infer: src/server/endpoint/endpoint_def.cpp:86-97 (eos_token | stop_sequence | length)."""
    return {"eos": "eos_token", "stop": "stop_sequence"}.get(reason, "length")


def openai_finish_reason(reason: str) -> str:
    """OpenAI and vLLM: "length" stays, everything else is "stop" (sri/single_req_vllm_openai_infer_interface.cpp:
    977 and :1156, sri/single_req_vllm_openai_completions_infer_interface.cpp:523 and :631)."""
    return "length" if reason == "length" else "stop"


# -- TGI: /generate with `inputs` (never streamed, sri/single_req_tgi_text_infer_interface.h:30) and
#    /generate_stream -------------------------------------------------------------------------------------------

def tgi_body(generated_text: str, *, details: bool, prompt_tokens: int, finish_reason: str, token_ids: list[int],
             seed: int | None) -> dict[str, Any]:
    """sri/single_req_tgi_text_infer_interface.cpp:322-328 (plain) and :278-307 (details: prompt_tokens,
    finish_reason, generated_tokens, prefill [], seed, tokens with text/logprob/special null)."""
    if not details:
        return {"generated_text": generated_text}
    return {"details": {"prompt_tokens": prompt_tokens, "finish_reason": finish_reason,
                        "generated_tokens": len(token_ids), "prefill": [], "seed": seed,
                        "tokens": [{"id": t, "logprob": None, "special": None, "text": None} for t in token_ids]},
            "generated_text": generated_text}


def tgi_event(token_id: int, text: str, *, final: dict[str, Any] | None = None) -> dict[str, Any]:
    """sri/single_req_tgi_text_infer_interface.cpp:357-383. Every event carries a token; the LAST one carries the
    last token together with generated_text (:359-371), and details only if asked (:372-380), else null.

    `final` = {"generated_text", "details": {prompt_tokens, finish_reason, generated_tokens, seed} | None}."""
    event: dict[str, Any] = {"token": {"id": token_id, "text": text, "logprob": None, "special": None}}
    if final is None:
        event.update(generated_text=None, details=None)
    else:
        event.update(generated_text=final["generated_text"], details=final.get("details"))
    return event


def tgi_stream_details(*, prompt_tokens: int, finish_reason: str, generated_tokens: int,
                       seed: int | None) -> dict[str, Any]:
    return {"prompt_tokens": prompt_tokens, "finish_reason": finish_reason, "generated_tokens": generated_tokens,
            "seed": seed}


# -- /infer (MindIE's own API) ----------------------------------------------------------------------------------

def infer_body(generated_text: str, *, details: bool, finish_reason: str, token_ids: list[int],
               seed: int | None) -> dict[str, Any]:
    """sri/single_req_self_develop_infer_interface.cpp:229-248: details only when parameters.details is true."""
    body: dict[str, Any] = {"generated_text": generated_text}
    if details:
        body["details"] = {"finish_reason": finish_reason, "generated_tokens": len(token_ids),
                           "generated_token_ids": list(token_ids), "seed": seed}
    return body


def infer_event(token_id: int, text: str, *, prefill_ms: float | None, decode_ms: float | None,
                final: dict[str, Any] | None = None) -> dict[str, Any]:
    """sri/single_req_self_develop_infer_interface.cpp:257-303. A token event: {prefill_time | decode_time, token}
    (:265-281). The LAST event carries generated_text, details (null unless asked, :287-297) and the last token's
    id with text null (:298-299): the last token's text is only in generated_text."""
    event: dict[str, Any] = {"prefill_time": prefill_ms, "decode_time": decode_ms}
    if final is None:
        event["token"] = {"id": token_id, "text": text}
        return event
    event["generated_text"] = final["generated_text"]
    event["details"] = final.get("details")
    event["token"] = {"id": token_id, "text": None}
    return event


def infer_stream_details(*, finish_reason: str, generated_tokens: int, seed: int | None) -> dict[str, Any]:
    return {"finish_reason": finish_reason, "generated_tokens": generated_tokens, "seed": seed}


# -- vLLM: /generate with `prompt` --------------------------------------------------------------------------------

def vllm_body(prompt: str, generated_text: str) -> dict[str, Any]:
    """sri/single_req_vllm_infer_interface.cpp:274-283: {"text": [prompt + " " + generated]}."""
    return {"text": [f"{prompt} {generated_text}"]}


def vllm_chunk(piece: str) -> bytes:
    """sri/single_req_vllm_infer_interface.cpp:300-320: {"text": [piece]} followed by a NUL byte, no [DONE]."""
    return json.dumps({"text": [piece]}, ensure_ascii=False, separators=(",", ":")).encode() + b"\0"


# -- OpenAI (openAiSupport = vllm, the default: src/config_manager/server_config.cpp:368-373) ----------------------

def _usage(prompt_tokens: int, completion_tokens: int, batch_size: list[int],
           queue_wait_time: list[int]) -> dict[str, Any]:
    """sri/single_req_vllm_openai_infer_interface.cpp:987-1004 (+ InsertPerfInfoIntoJson,
    sri/single_req_infer_interface_base.cpp:1132-1155: batch_size and queue_wait_time are arrays)."""
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens, "batch_size": batch_size,
            "queue_wait_time": queue_wait_time}


def chat_body(ident: str, created: int, model: str, content: str, finish_reason: str, *, prompt_tokens: int,
              completion_tokens: int, batch_size: list[int], queue_wait_time: list[int], prefill_ms: float,
              decode_ms: list[float]) -> dict[str, Any]:
    """sri/single_req_vllm_openai_infer_interface.cpp:935-1010."""
    choice = {"index": 0, "message": {"role": "assistant", "content": content, "tool_calls": []}, "logprobs": None,
              "finish_reason": finish_reason}
    return {"id": ident, "object": "chat.completion", "created": created, "model": model, "choices": [choice],
            "usage": _usage(prompt_tokens, completion_tokens, batch_size, queue_wait_time),
            "prefill_time": prefill_ms, "decode_time_arr": decode_ms}


def chat_chunk(ident: str, created: int, model: str, content: str, *, finish: dict[str, Any] | None = None
               ) -> dict[str, Any]:
    """sri/single_req_vllm_openai_infer_interface.cpp:1039-1058 (the first chunk: role + empty content) and
    :1105-1186 (every later chunk repeats role, :1117; the LAST content chunk carries finish_reason and usage,
    :1153-1180). `finish` = {"finish_reason", "usage"}."""
    choice: dict[str, Any] = {"index": 0, "delta": {"role": "assistant", "content": content}, "logprobs": None,
                              "finish_reason": None}
    chunk: dict[str, Any] = {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model}
    if finish is not None:
        choice["finish_reason"] = finish["finish_reason"]
        chunk["usage"] = finish["usage"]
    chunk["choices"] = [choice]
    return chunk


def completion_body(ident: str, created: int, model: str, text: str, finish_reason: str, *, prompt_tokens: int,
                    completion_tokens: int, batch_size: list[int], queue_wait_time: list[int]) -> dict[str, Any]:
    """sri/single_req_vllm_openai_completions_infer_interface.cpp:483-545 (no prefill_time)."""
    choice = {"index": 0, "text": text, "logprobs": None, "stop_reason": None, "finish_reason": finish_reason}
    return {"id": ident, "object": "text_completion", "created": created, "model": model, "choices": [choice],
            "usage": _usage(prompt_tokens, completion_tokens, batch_size, queue_wait_time)}


def completion_chunk(ident: str, created: int, model: str, text: str, *, finish: dict[str, Any] | None = None
                     ) -> dict[str, Any]:
    """sri/single_req_vllm_openai_completions_infer_interface.cpp:600-657: no role chunk; the last content chunk
    carries finish_reason and usage."""
    choice = {"index": 0, "text": text, "logprobs": None, "stop_reason": None,
              "finish_reason": None if finish is None else finish["finish_reason"]}
    chunk: dict[str, Any] = {"id": ident, "object": "text_completion", "created": created, "model": model,
                             "choices": [choice]}
    if finish is not None:
        chunk["usage"] = finish["usage"]
    return chunk


def usage(prompt_tokens: int, completion_tokens: int, batch_size: list[int], queue_wait_time: list[int]
          ) -> dict[str, Any]:
    return _usage(prompt_tokens, completion_tokens, batch_size, queue_wait_time)


# -- Models --------------------------------------------------------------------------------------------------------

def masked_root(path: str) -> str:
    """utils/log/file_utils.cpp:464-495 GetSafeRelativePath: the first two path levels become `***`."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        return ""
    return "***/" + "/".join(parts[2:] if len(parts) > 2 else parts[-1:])


def models_list_text(model: str, weight_path: str) -> str:
    """http_handler.cpp:1278-1331: nlohmann::json (keys sorted) dumped with indent 4; no `created`; the base model's
    `parent` is the string "null" (:1299)."""
    body = {"data": [{"id": model, "object": "model", "owned_by": "MindIE Server", "parent": "null",
                      "root": masked_root(weight_path)}], "object": "list"}
    return json.dumps(body, indent=4, sort_keys=True, ensure_ascii=False)


def model_card(model: str, created: int) -> dict[str, Any]:
    """http_handler.cpp:1338-1352 -> sri/parse_protocol.cpp:411-420 (unknown name: 404 "Model X not found.",
    http_handler.cpp GetRequestModelConfig)."""
    return {"id": model, "object": "model", "created": created, "owned_by": "MindIE Server"}


# -- Requests (what smoke and bench send) --------------------------------------------------------------------------

def request_body(api: str, prompt: str, max_tokens: int, *, model: str | None = None, stream: bool = True,
                 details: bool = True, ignore_eos: bool = False) -> tuple[str, dict[str, Any]]:
    """(path, JSON body) for one generation. TGI and /infer take `parameters.max_new_tokens` and return token counts
    only with `parameters.details` (sri/single_req_tgi_text_infer_interface.cpp:372,
    sri/single_req_self_develop_infer_interface.cpp:287); OpenAI and vLLM take top-level `max_tokens`;
    `ignore_eos` is read by OpenAI and vLLM only (src/server/endpoint/utils/infer_param.cpp:483-490)."""
    if api in ("tgi", "infer"):
        parameters: dict[str, Any] = {"max_new_tokens": max_tokens, "details": details}
        body: dict[str, Any] = {"inputs": prompt, "parameters": parameters}
        if api == "infer":
            body["stream"] = stream
            return "/infer", body
        return ("/generate_stream" if stream else "/generate"), body
    body = {"max_tokens": max_tokens, "stream": stream}
    if ignore_eos:
        body["ignore_eos"] = True
    if api == "vllm":
        return "/generate", {"prompt": prompt, **body}
    if api == "openai-chat":
        return "/v1/chat/completions", {"model": model, "messages": [{"role": "user", "content": prompt}], **body}
    if api == "openai-completions":
        return "/v1/completions", {"model": model, "prompt": prompt, **body}
    raise ValueError(f"unknown API {api!r}")
