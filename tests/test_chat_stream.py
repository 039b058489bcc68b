"""The chat page's reading of MindIE's OpenAI chat stream, and the upstream request and its curl form.

The chunk fixtures follow real MindIE 2.3.0 (single_req_vllm_openai_infer_interface.cpp at 40fb0630:
first chunk :1039-1058, role repeated :1117, finish_reason+usage in the last content chunk :1153-1180,
`[DONE]` :1188) and the OpenAI/vLLM shape (separate empty-delta finish chunk; `include_usage` chunk with no
choices). The curl command is checked with bash's own word splitting and json.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator
from typing import Any

import pytest

from mindie_pack.chat.request import BadChatRequest, build_chat_request
from mindie_pack.chat.stream import StreamError, StreamState, error_text, sse_payloads


def chunk(delta: dict[str, Any] | None, finish: str | None = None, usage: dict[str, Any] | None = None,
          choices: bool = True) -> str:
    body: dict[str, Any] = {"id": "endpoint_common_1", "object": "chat.completion.chunk", "created": 1764000000,
                            "model": "qwen"}
    body["choices"] = [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}] if choices else []
    if usage is not None:
        body["usage"] = usage
    return json.dumps(body, ensure_ascii=False)


USAGE = {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10, "batch_size": [1, 1, 1],
         "queue_wait_time": [12, 0, 0]}
REAL_MINDIE = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"role": "assistant", "content": "你好"}),
    chunk({"role": "assistant", "content": ", wor"}),
    chunk({"role": "assistant", "content": "ld"}, "length", USAGE),
    "[DONE]",
]
OPENAI_SHAPE = [
    chunk({"role": "assistant", "content": ""}),
    chunk({"content": "你好"}),
    chunk({"content": ", wor"}),
    chunk({"content": "ld"}),
    chunk({}, "length", {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}),
    "[DONE]",
]
INCLUDE_USAGE = [
    chunk({"role": "assistant", "content": "你好"}),
    chunk({"content": ", world"}, "length"),
    chunk(None, usage={"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}, choices=False),
    "[DONE]",
]


def run(lines: list[str]) -> tuple[StreamState, list[str]]:
    state = StreamState()
    pieces = []
    for data in lines:
        piece = state.feed(data)
        if piece is not None and piece.content:
            pieces.append(piece.content)
    return state, pieces


@pytest.mark.parametrize("lines", [REAL_MINDIE, OPENAI_SHAPE, INCLUDE_USAGE], ids=["mindie", "openai", "usage"])
def test_both_stream_shapes_give_the_same_answer(lines: list[str]) -> None:
    state, pieces = run(lines)
    assert "".join(pieces) == state.text == "你好, world"
    assert state.done and state.finish_reason == "length"
    assert state.usage is not None and state.usage["completion_tokens"] == 3
    assert state.end_problem() is None and state.notes == []


def test_real_shape_counts_the_role_only_chunk_but_not_as_content() -> None:
    state, pieces = run(REAL_MINDIE)
    assert (state.chunks, state.content_chunks, pieces) == (4, 3, ["你好", ", wor", "ld"])


def test_reasoning_content_is_kept_apart_from_the_answer() -> None:
    state = StreamState()
    piece = state.feed(chunk({"role": "assistant", "reasoning_content": "think"}))
    assert piece is not None and (piece.reasoning, piece.content) == ("think", "")
    state.feed(chunk({"role": "assistant", "content": "answer"}, "stop", USAGE))
    assert state.text == "answer" and state.content_chunks == 2


def test_a_stream_without_finish_or_done_is_cut() -> None:
    state, _ = run(REAL_MINDIE[:3])
    assert state.end_problem() == ("the stream was cut after 3 chunk(s): the service closed it without a "
                                   "finish_reason or `data: [DONE]`")


def test_finish_without_done_is_complete_with_a_note() -> None:
    state, _ = run(REAL_MINDIE[:4])
    assert state.end_problem() is None
    assert state.notes == ["the stream ended without `data: [DONE]`"]


@pytest.mark.parametrize(("data", "message"), [
    ('{"error":"Failed to get engine response.","error_type":"Incomplete Generation"}',
     "the service reported an error in the stream: Incomplete Generation: Failed to get engine response."),
    ('{"error":{"message":"boom","type":"server_error"}}',
     "the service reported an error in the stream: server_error: boom"),
    ("not json", "the service sent a stream line that is not JSON: 'not json'"),
    ('{"object":"chat.completion.chunk"}', 'the service sent a stream chunk without `choices`: '
     '{"object":"chat.completion.chunk"}'),
])
def test_bad_or_error_chunks_raise_with_the_text(data: str, message: str) -> None:
    state = StreamState()
    state.feed(REAL_MINDIE[1])
    with pytest.raises(StreamError) as caught:
        state.feed(data)
    assert str(caught.value) == message


def test_data_after_done_is_an_error() -> None:
    state, _ = run(REAL_MINDIE)
    with pytest.raises(StreamError, match="after \\[DONE\\]"):
        state.feed(REAL_MINDIE[1])


def test_error_text_of_mindie_bodies() -> None:
    assert error_text({"error": "Parameter top_p must be in (0.0,1.0], got 1.5.",
                       "error_type": "Input Validation Error"}) == \
        "Input Validation Error: Parameter top_p must be in (0.0,1.0], got 1.5."
    assert error_text({"choices": []}) is None and error_text("x") is None


def shell_words(command: str) -> list[str]:
    """The words bash passes to `curl` for this command line (curl replaced by a function printing them)."""
    script = 'curl() { printf "%s\\0" curl "$@"; }\n' + command
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True, timeout=30).stdout
    return out.split("\0")[:-1]


def test_request_and_its_curl_command_round_trip_through_the_shell() -> None:
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "it's \"quoted\" $HOME 你好"}]
    request = build_chat_request("http://127.0.0.1:1025/", {"messages": messages, "temperature": 0, "top_p": 0.9,
                                                            "max_tokens": 64.0, "model": None}, "qwen")
    assert request.url == "http://127.0.0.1:1025/v1/chat/completions"
    assert request.body == {"model": "qwen", "messages": messages, "temperature": 0, "top_p": 0.9, "max_tokens": 64,
                            "stream": True}
    words = shell_words(request.curl())
    assert words[:6] == ["curl", "-sS", "-N", "-X", "POST", request.url]
    assert words[6:8] == ["-H", "Content-Type: application/json"] and words[8] == "-d"
    assert json.loads(words[9]) == request.body and len(words) == 10


def test_empty_sampling_fields_are_left_to_the_service() -> None:
    request = build_chat_request("http://h:1", {"messages": [{"role": "user", "content": "x"}], "temperature": None,
                                                "top_p": "", "model": "m"}, None)
    assert request.body == {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": True}


@pytest.mark.parametrize(("fields", "message"), [
    ([], "expected a JSON object"),
    ({"messages": []}, "messages: expected a non-empty list of {role, content}"),
    ({"messages": [{"role": "bot", "content": "x"}]}, "messages[0]: expected {role: system|user|assistant, "
     "content: string}"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}, 'temperature: expected a number, '
     'got "hot"'),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 2.5}, "max_tokens: expected a whole number, "
     "got 2.5"),
])
def test_bad_page_requests_name_the_field(fields: Any, message: str) -> None:
    with pytest.raises(BadChatRequest) as caught:
        build_chat_request("http://h:1", fields, "m")
    assert str(caught.value) == message


def test_no_model_at_all_is_refused() -> None:
    with pytest.raises(BadChatRequest, match="no model"):
        build_chat_request("http://h:1", {"messages": [{"role": "user", "content": "x"}]}, None)


async def _lines(text: str) -> AsyncIterator[str]:
    for line in text.split("\n"):
        yield line


def payloads(text: str) -> list[str]:
    async def collect() -> list[str]:
        return [p async for p in sse_payloads(_lines(text))]

    return asyncio.run(collect())


def test_sse_framing() -> None:
    # MindIE frames every event as `data: <json>\n\n` (http_rest_resource.cpp / the encoders' "data: " + dump).
    assert payloads('data: {"a": 1}\n\ndata: [DONE]\n\n') == ['{"a": 1}', "[DONE]"]
    # Comments (keep-alives), other fields, multi-line data and a last event without its blank line.
    assert payloads(": keep-alive\n\nevent: x\ndata:one\ndata: two\n\nid: 3\ndata: tail") == ["one\ntwo", "tail"]
    assert payloads("\n\n") == []
