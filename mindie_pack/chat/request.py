"""The upstream chat request built from the page's fields, and the same request as a curl command for runbooks.

Ranges (temperature, top_p, max_tokens) are not checked here on purpose: MindIE checks them
(`src/server/endpoint/utils/infer_param.cpp` at 40fb0630: AssignTemperature :404-418 with the OpenAI maximum
2.0 from single_req_openai_infer_interface.cpp:28, AssignTopP :470-480, AssignMaxTokens :420-440), and the page
shows its own 4xx body, so the user reads the service's rule rather than ours.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass
from typing import Any

CHAT_PATH = "/v1/chat/completions"
ROLES = ("system", "user", "assistant")
SAMPLING_FIELDS = ("temperature", "top_p", "max_tokens")


class BadChatRequest(ValueError):
    """The page sent something that is not a chat request (answered with 400 and this text)."""


@dataclass(frozen=True)
class ChatRequest:
    url: str
    body: dict[str, Any]

    def curl(self) -> str:
        """The request as a copy-pastable curl command (-N: print the stream as it arrives)."""
        payload = json.dumps(self.body, ensure_ascii=False)
        return (f"curl -sS -N -X POST {shlex.quote(self.url)} \\\n"
                f"  -H 'Content-Type: application/json' \\\n"
                f"  -d {shlex.quote(payload)}")


def _number(fields: dict[str, Any], key: str) -> int | float | None:
    value = fields.get(key)
    if value is None or value == "":
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise BadChatRequest(f"{key}: expected a number, got {json.dumps(value)[:60]}")
    if key == "max_tokens":
        if isinstance(value, float) and not value.is_integer():
            raise BadChatRequest(f"max_tokens: expected a whole number, got {value}")
        return int(value)
    return value


def _messages(value: Any) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise BadChatRequest("messages: expected a non-empty list of {role, content}")
    out = []
    for index, message in enumerate(value):
        if not isinstance(message, dict) or message.get("role") not in ROLES \
                or not isinstance(message.get("content"), str):
            raise BadChatRequest(f"messages[{index}]: expected {{role: {'|'.join(ROLES)}, content: string}}")
        out.append({"role": message["role"], "content": message["content"]})
    return out


def build_chat_request(business_url: str, fields: Any, default_model: str | None) -> ChatRequest:
    """The page's JSON (`messages`, optional `model`, `temperature`, `top_p`, `max_tokens`) -> MindIE request."""
    if not isinstance(fields, dict):
        raise BadChatRequest("expected a JSON object")
    model = fields.get("model") or default_model
    if not isinstance(model, str) or not model:
        raise BadChatRequest("no model: the service's /v1/models did not answer yet and the page sent none")
    body: dict[str, Any] = {"model": model, "messages": _messages(fields.get("messages"))}
    for key in SAMPLING_FIELDS:
        value = _number(fields, key)
        if value is not None:
            body[key] = value
    body["stream"] = True
    return ChatRequest(business_url.rstrip("/") + CHAT_PATH, body)
