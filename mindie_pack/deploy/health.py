"""The health probe used by `status` and `stop`: management /health, only on a loopback or configured address."""

from __future__ import annotations

from mindie_pack.deploy.probe import Endpoints
from mindie_pack.deploy.state import DeploymentState


def endpoints_of(state: DeploymentState) -> Endpoints:
    return Endpoints(state.business_url, state.management_url, state.metrics_url, state.model_name)


def healthy(state: DeploymentState, timeout_s: float = 5.0) -> tuple[bool, list[str] | None]:
    """(management /health is 200, the models /v1/models lists); both bounded by `timeout_s`."""
    import httpx

    from mindie_pack.deploy.probe import health_ok, models_list

    endpoints = endpoints_of(state)
    with httpx.Client(timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 3.0)), trust_env=False) as client:
        ok = health_ok(client, endpoints)
        if state.role == "worker":  # a multi-node worker serves no inference API
            return ok, None
        return ok, models_list(client, endpoints) if ok else None


def request_stop_service(state: DeploymentState, drain_s: float) -> bool:
    """GET /stopService: the real daemon answers once running and waiting requests are done, so wait up to
    `drain_s` for the answer. True when it answered 200."""
    import httpx

    try:
        with httpx.Client(timeout=httpx.Timeout(max(drain_s, 1.0), connect=3.0), trust_env=False) as client:
            return client.get(f"{state.management_url}/stopService").status_code == 200
    except httpx.HTTPError:
        return False
