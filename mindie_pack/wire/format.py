"""The shapes of MindIE 2.3.0's HTTP bodies and stream events, as facts read from its source.

Every builder cites where the real server builds the same thing. Paths are relative to MindIE-LLM commit 40fb0630
(= MindIE 2.3.0); `sri/` stands for `src/server/endpoint/single_req_infer_interface/`, `http_handler.cpp` for
`src/server/endpoint/http_wrapper/http_handler.cpp`. Key order follows the real (nlohmann ordered_json keeps
insertion order) so transcripts compare byte for byte where it matters.

MindIE 3.0.0 (commit 8b4871ad) is selected by passing the release the emulator serves (`release="3.0.0"`); where
3.0.0 differs, the fact carries both citations (`@8b4871ad`). Compared for exactly what the emulator serves, with no
observable difference between 40fb0630 and 8b4871ad: the TGI /generate and /generate_stream bodies and events
(sri/single_req_tgi_text_infer_interface.cpp, only the stop-string forwarding of PD requests changed), /infer
(sri/single_req_self_develop_infer_interface.cpp), vLLM /generate (sri/single_req_vllm_infer_interface.cpp: a
best_of message's capital letter only), the finish reasons (src/server/endpoint/endpoint_def.cpp), the error body and
status -> error_type table (src/server/endpoint/utils/http_rest_resource.h and .cpp: formatting only), the /generate
dispatch error (http_handler.cpp:459-466, @8b4871ad :443-455), /v1/models and /v1/models/{id} (http_handler.cpp
:1278-1352, @8b4871ad :1362-1436; sri/parse_protocol.cpp), /health (HandleGetHealthStatus, http_handler.cpp
:1227-1263, @8b4871ad :1311-1349), /stopService, and the defaults MAX_NEW_TOKENS_DFT = 20 and
VLLM_MAX_NEW_TOKENS_DFT = 16 (endpoint_def.h:75-76 at both commits), the OpenAI default max_tokens = maxIterTimes
(src/server/endpoint/utils/infer_param.cpp:425-427, @8b4871ad :519-525).
One 3.0.0 change is in decoding, not in a builder: `skip_special_tokens` defaults to true
(@8b4871ad sri/single_req_infer_interface_base.cpp:965-979, sri/single_req_vllm_openai_infer_interface.cpp:837 and
:887, ..._completions_...cpp:398 and :453; false at 40fb0630 :995-1010, :850, :903, :410, :465). The emulator's
runtime always decodes with skip_special_tokens=True (mindie_pack/runtime/tokenizer.py), which is 3.0.0's default.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from typing import Any, Literal

DEFAULT_RELEASE = "2.3.0"


def is_v3(release: str | None) -> bool:
    """MindIE 3.x (commit 8b4871ad) rather than 2.3.0 (40fb0630) or older; an unknown release reads as 2.3.0."""
    match = re.match(r"\s*(\d+)", release or "")
    return bool(match) and int(match.group(1)) >= 3


# -- OpenAI performance fields (usage.batch_size / usage.queue_wait_time, prefill_time / decode_time_arr) -----------
# 2.3.0 adds them to every OpenAI chat and completions answer (sri/single_req_vllm_openai_infer_interface.cpp:1000-1010
# and :1171-1180, sri/single_req_vllm_openai_completions_infer_interface.cpp:540 and :642). 3.0.0 adds them only when
# MINDIE_LLM_BENCHMARK_ENABLE is 1 (sync) or 2 (async) (@8b4871ad sri/single_req_vllm_openai_infer_interface.cpp:
# 985-1002 and :1162-1176, sri/single_req_vllm_openai_completions_infer_interface.cpp:528-542 and :635-648,
# BENCHMARK_ENABLE_SYNC/ASYNC src/server/endpoint/endpoint_def.h:104-107), read with EnvUtil::GetInt: std::stoi of
# the value, 0 when unset or unparsable (@8b4871ad src/utils/env_util.cpp:74-89).
BENCHMARK_ENV = "MINDIE_LLM_BENCHMARK_ENABLE"
BENCHMARK_ENABLED_VALUES = (1, 2)


def openai_perf_fields(release: str | None, env: Mapping[str, str] | None = None) -> bool:
    """Whether the OpenAI answers of this release carry the performance fields."""
    if not is_v3(release):
        return True
    value = (os.environ if env is None else env).get(BENCHMARK_ENV, "")
    match = re.match(r"\s*([+-]?\d+)", value)  # std::stoi: leading blanks, a sign, the leading digits
    return bool(match) and int(match.group(1)) in BENCHMARK_ENABLED_VALUES

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

def _usage(prompt_tokens: int, completion_tokens: int, batch_size: list[int] | None,
           queue_wait_time: list[int] | None) -> dict[str, Any]:
    """sri/single_req_vllm_openai_infer_interface.cpp:987-1004 (+ InsertPerfInfoIntoJson,
    sri/single_req_infer_interface_base.cpp:1132-1155: batch_size and queue_wait_time are arrays). None for both
    perf arrays leaves them out (3.0.0 without MINDIE_LLM_BENCHMARK_ENABLE, see openai_perf_fields)."""
    body: dict[str, Any] = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                            "total_tokens": prompt_tokens + completion_tokens}
    if batch_size is not None and queue_wait_time is not None:
        body.update(batch_size=batch_size, queue_wait_time=queue_wait_time)
    return body


def chat_body(ident: str, created: int, model: str, content: str, finish_reason: str, *, prompt_tokens: int,
              completion_tokens: int, batch_size: list[int] | None, queue_wait_time: list[int] | None,
              prefill_ms: float | None, decode_ms: list[float] | None) -> dict[str, Any]:
    """sri/single_req_vllm_openai_infer_interface.cpp:935-1010; prefill_ms/decode_ms None leaves prefill_time and
    decode_time_arr out (3.0.0 without MINDIE_LLM_BENCHMARK_ENABLE, @8b4871ad :985-1002)."""
    choice = {"index": 0, "message": {"role": "assistant", "content": content, "tool_calls": []}, "logprobs": None,
              "finish_reason": finish_reason}
    body = {"id": ident, "object": "chat.completion", "created": created, "model": model, "choices": [choice],
            "usage": _usage(prompt_tokens, completion_tokens, batch_size, queue_wait_time)}
    if prefill_ms is not None and decode_ms is not None:
        body.update(prefill_time=prefill_ms, decode_time_arr=decode_ms)
    return body


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
                    completion_tokens: int, batch_size: list[int] | None, queue_wait_time: list[int] | None
                    ) -> dict[str, Any]:
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


def usage(prompt_tokens: int, completion_tokens: int, batch_size: list[int] | None,
          queue_wait_time: list[int] | None) -> dict[str, Any]:
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


# -- Management and metrics planes ----------------------------------------------------------------------------------

def abnormal_nodes_text(nodes: list[str]) -> str:
    """JsonParse::EncodeAbnormalNodeInfo (sri/parse_protocol.cpp:435-447, @8b4871ad :430-442)."""
    return json.dumps({"message": "Abnormal node detected",
                       "no_contact_node": [f"node({node}) is abnormal." for node in nodes]}, separators=(",", ":"))


def live_ready_abnormal_is_wrapped(release: str | None) -> bool:
    """/v2/health/live and /v2/health/ready with an abnormal node: 2.3.0 answers through HandleGetHealthStatus, a 500
    whose `error` is the node JSON as a string (http_handler.cpp:567-587 -> :1258-1262); 3.0.0 answers through
    HandleGetLivenessAndReadiness, a 500 whose body IS the node JSON (@8b4871ad http_handler.cpp:572-594 ->
    :776-791). /health keeps the wrapped answer in both (@8b4871ad http_handler.cpp:621-630 -> :1343-1348)."""
    return not is_v3(release)


def timed_timeout_message(release: str | None, wait_s: int) -> str:
    """The `error` of /health/timed's 500 when the virtual inference does not answer in time. 3.0.0 reports the
    SimulateResult message (@8b4871ad http_handler.cpp:555-561) of a wait that timed out
    (@8b4871ad src/server/endpoint/health_checker/simulate_request_executor.cpp:143)."""
    return "Engine callback timeout" if is_v3(release) else f"Virtual inference timed out after {wait_s} s."


def metrics_content_type(release: str | None) -> str:
    """/metrics: application/json in 2.3.0 (http_handler.cpp:897-900), text/plain; charset=utf-8 in 3.0.0
    (@8b4871ad http_handler.cpp:960-972)."""
    return "text/plain; charset=utf-8" if is_v3(release) else "application/json"


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
