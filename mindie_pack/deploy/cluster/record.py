"""The controller's record of a multi-node deployment: a deployment state of mode "cluster" whose URLs are the
master's, so that `smoke`, `bench` and `chat` find the service as for one server, and `status`/`logs`/`stop`
reach every node."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from mindie_pack.deploy.state import DeploymentState, clear_state, load_state, save_state
from mindie_pack.errors import PackError


def save_cluster(cluster: dict[str, Any]) -> DeploymentState:
    """Record the cluster on the controller: while starting (no URLs yet), then serving (the master's URLs)."""
    master = next((h for h in cluster["hosts"] if h["role"] == "master"), {}).get("state") or {}
    state = DeploymentState(pid=None, pgid=None, mode="cluster", config_path=master.get("config_path", ""),
                            model_dir=master.get("model_dir", cluster.get("model_dir", "")),
                            model_name=master.get("model_name", ""), log_path=master.get("log_path", ""),
                            started_at=time.time(), business_url=master.get("business_url", ""),
                            management_url=master.get("management_url", ""),
                            metrics_url=master.get("metrics_url", ""), mindie_home=master.get("mindie_home", ""),
                            deployment_dir=master.get("deployment_dir", ""), role="controller", cluster=cluster)
    save_state(state)
    return state


def clear_previous_cluster(replace: bool) -> None:
    """Before a new deploy: a recorded deployment is refused unless --replace (then stopped everywhere)."""
    previous = load_state(required=False)
    if previous is None:
        return
    if not replace:
        where = f"{len(previous.cluster['hosts'])} servers" if previous.mode == "cluster" and previous.cluster \
            else f"pid {previous.pid}"
        raise PackError(f"a deployment is recorded ({where}, {previous.business_url}, model {previous.model_name}): "
                        "stop it first, or pass --replace")
    if previous.mode == "cluster" and previous.cluster:
        from mindie_pack.deploy.cluster.orchestrate import cluster_stop

        results = asyncio.run(cluster_stop(previous.cluster, 30.0))
        failed = [r["host"] for r in results if not r.get("stopped")]
        if failed:
            raise PackError(f"--replace: the previous deployment could not be stopped on {', '.join(failed)}")
    else:
        from mindie_pack.deploy.stop import stop_locked

        stop_locked(timeout_s=30)
    clear_state()
