"""Readiness probes against a running service, on the addresses its config names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Endpoints:
    business_url: str
    management_url: str
    metrics_url: str
    model_name: str

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Endpoints:
        server = config["ServerConfig"]
        ip = server["ipAddress"]
        mgmt = server.get("managementIpAddress", ip)
        model = config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["modelName"]

        def url(host: str, port: int) -> str:
            host = "127.0.0.1" if host == "0.0.0.0" else host
            return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

        return cls(url(ip, server["port"]), url(mgmt, server.get("managementPort", server["port"])),
                   url(mgmt, server["metricsPort"]), model)


def health_ok(client: httpx.Client, endpoints: Endpoints) -> bool:
    try:
        return client.get(f"{endpoints.management_url}/health").status_code == 200
    except httpx.HTTPError:
        return False


def models_list(client: httpx.Client, endpoints: Endpoints) -> list[str] | None:
    try:
        response = client.get(f"{endpoints.business_url}/v1/models")
        if response.status_code != 200:
            return None
        return [m.get("id") for m in response.json().get("data", [])]
    except (httpx.HTTPError, ValueError, AttributeError):
        return None


def one_token_ok(client: httpx.Client, endpoints: Endpoints) -> tuple[bool, str]:
    try:
        response = client.post(f"{endpoints.business_url}/generate",
                               json={"inputs": "hello", "parameters": {"max_new_tokens": 1}, "stream": False})
    except httpx.HTTPError as exc:
        return False, f"no answer from POST {endpoints.business_url}/generate ({type(exc).__name__}: {exc})"
    if response.status_code != 200:
        return False, f"HTTP {response.status_code} from /generate: {response.text[:200]}"
    try:
        ok = isinstance(response.json().get("generated_text"), str)
    except ValueError:
        ok = False
    return ok, "" if ok else f"a /generate answer without generated_text: {response.text[:200]}"


def serving(client: httpx.Client, endpoints: Endpoints) -> tuple[bool, str]:
    """The three readiness steps in order; on failure, which step failed and what it returned."""
    if not health_ok(client, endpoints):
        return False, f"{endpoints.management_url}/health did not answer 200 yet"
    listed = models_list(client, endpoints)
    if listed is None or endpoints.model_name not in listed:
        return False, f"{endpoints.business_url}/v1/models does not list {endpoints.model_name} yet" + (
            f" (it lists {', '.join(map(str, listed)) or 'nothing'})" if listed is not None else "")
    ok, why = one_token_ok(client, endpoints)
    return ok, "" if ok else f"the one-token request returned {why}"
