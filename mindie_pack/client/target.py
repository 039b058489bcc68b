"""Which service the client talks to: explicit URLs, else the current deployment's state file."""

from __future__ import annotations

from dataclasses import dataclass

from mindie_pack.deploy.state import load_state
from mindie_pack.errors import PackError


@dataclass(frozen=True)
class Target:
    business_url: str
    management_url: str
    metrics_url: str | None
    model: str | None


def resolve_target(url: str | None = None, management_url: str | None = None, model: str | None = None,
                   metrics_url: str | None = None) -> Target:
    if url:
        return Target(url.rstrip("/"), (management_url or url).rstrip("/"), metrics_url, model)
    state = load_state(required=False)
    if state is None:
        raise PackError("no --url given and no current deployment (run `mindie-pack deploy`, or pass --url and "
                        "--management-url)")
    return Target(state.business_url, management_url or state.management_url, metrics_url or state.metrics_url,
                  model or state.model_name)
