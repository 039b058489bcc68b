"""`k8s render --apply`: server-side apply of the rendered objects with the official kubernetes client.

Only used where a cluster is reachable (the user's kubeconfig or the in-cluster service account); nothing here
runs in the test suite's default path, which validates the manifests offline instead.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mindie_pack.errors import PackError

FIELD_MANAGER = "mindie-pack"
REQUEST_TIMEOUT_S = (10, 60)  # (connect, read) for every API call


def apply_objects(objects: list[dict[str, Any]], *, namespace: str | None,
                  on_applied: Callable[[str], None] | None = None) -> list[str]:
    try:
        from kubernetes import config
        from kubernetes.client import ApiClient
        from kubernetes.config.config_exception import ConfigException
        from kubernetes.dynamic import DynamicClient
        from kubernetes.dynamic.exceptions import DynamicApiError
    except ImportError as exc:
        raise PackError("--apply needs the kubernetes client: pip install 'mindie-pack[k8s]'") from exc
    try:
        try:
            config.load_kube_config()
        except (ConfigException, FileNotFoundError):
            config.load_incluster_config()
    except ConfigException as exc:
        raise PackError(f"--apply: no Kubernetes cluster configured (kubeconfig or in-cluster): {exc}") from exc
    try:
        # A bounded probe first: DynamicClient's constructor runs API discovery without any timeout.
        from kubernetes.client import VersionApi

        api_client = ApiClient()
        VersionApi(api_client).get_code(_request_timeout=REQUEST_TIMEOUT_S)
        client = DynamicClient(api_client)
    except Exception as exc:  # urllib3/socket errors, an API server that refuses us
        raise PackError(f"--apply: the Kubernetes API server did not answer ({exc.__class__.__name__}: "
                        f"{str(exc).splitlines()[0][:200] if str(exc) else ''}); nothing was applied") from exc
    applied: list[str] = []
    for obj in objects:
        what = f"{obj['kind']}/{obj['metadata']['name']}"
        ns = obj["metadata"].get("namespace") or namespace or "default"
        try:
            resource = client.resources.get(api_version=obj["apiVersion"], kind=obj["kind"])
            resource.server_side_apply(body=obj, name=obj["metadata"]["name"], namespace=ns,
                                       field_manager=FIELD_MANAGER, force_conflicts=True,
                                       _request_timeout=REQUEST_TIMEOUT_S)
        except DynamicApiError as exc:
            raise PackError(f"--apply: {what} was refused by the cluster: {exc.status} {exc.reason}; "
                            f"applied before it: {', '.join(applied) or 'nothing'}") from exc
        except Exception as exc:  # urllib3/socket errors: the cluster did not answer in time
            raise PackError(f"--apply: {what}: {exc.__class__.__name__}: {exc}; "
                            f"applied before it: {', '.join(applied) or 'nothing'}") from exc
        applied.append(what)
        if on_applied:
            on_applied(what)
    return applied
