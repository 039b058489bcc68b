"""`k8s render`: manifests validated offline against the Kubernetes schemas, their semantics, and the pod's
entrypoint script run for real (bash + python3) with a stand-in daemon."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.options import BuildOptions
from mindie_pack.config.render import render_config

from conftest import REPO_ROOT

# The oldest and the newest Kubernetes API versions we render for (both strict: unknown fields are errors).
K8S_VERSIONS = ("1.25.0", kubernetes_validate.latest_version())


@pytest.fixture(scope="module")
def config_file(tiny_models: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("k8s") / "model"
    build_model_dir(BuildOptions(model_dir=tiny_models(family="qwen2"), output_dir=out, tp=2, name="tiny-qwen"))
    config = render_config(None, model_dir=out, mindie_version="2.3.0",
                           sets=["BackendConfig.npuDeviceIds=[[4,5]]"])
    path = out.parent / "config.json"
    path.write_text(json.dumps(config))
    return path


def rank_table(servers: int, per_server: int = 2) -> dict[str, Any]:
    rank = 0
    server_list = []
    for s in range(servers):
        devices = []
        for d in range(per_server):
            devices.append({"device_id": str(d), "device_ip": f"192.168.{s}.{d + 10}", "rank_id": str(rank)})
            rank += 1
        server_list.append({"server_id": f"10.0.0.{s + 1}", "container_ip": f"10.0.0.{s + 1}", "device": devices})
    return {"version": "1.0", "server_count": str(servers), "server_list": server_list, "status": "completed"}


def render(cli: Callable[..., Any], tmp_path: Path, *args: str | Path) -> list[dict[str, Any]]:
    out = tmp_path / "manifests.yaml"
    result = cli("k8s", "render", "--image", "mindie:2.3.0-800I-A2-py311-openeuler24.03-lts", "--output", out, *args)
    assert result.exit_code == 0, result.stderr
    return list(yaml.safe_load_all(out.read_text()))


def by_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o["kind"] == kind]


def container(obj: dict[str, Any]) -> dict[str, Any]:
    return obj["spec"]["template"]["spec"]["containers"][0]


def env_of(obj: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(obj)["env"]}


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_single_server_manifests_validate_against_the_kubernetes_schemas(cli: Callable[..., Any], config_file: Path,
                                                                         tmp_path: Path, version: str) -> None:
    objects = render(cli, tmp_path, "--config", config_file, "--name", "qwen", "--namespace", "llm")
    assert [o["kind"] for o in objects] == ["ConfigMap", "Deployment", "Service"]
    for obj in objects:
        kubernetes_validate.validate(obj, desired_version=version, strict=True)


@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_multi_server_manifests_validate_against_the_kubernetes_schemas(cli: Callable[..., Any], config_file: Path,
                                                                        tmp_path: Path, version: str) -> None:
    table = tmp_path / "ranktable.json"
    table.write_text(json.dumps(rank_table(3)))
    objects = render(cli, tmp_path, "--config", config_file, "--ranktable", table, "--node-names", "n1,n2,n3")
    assert [o["kind"] for o in objects] == ["ConfigMap", "Service", "StatefulSet", "StatefulSet", "Service"]
    for obj in objects:
        kubernetes_validate.validate(obj, desired_version=version, strict=True)


def test_single_server_semantics(cli: Callable[..., Any], config_file: Path, tmp_path: Path) -> None:
    objects = render(cli, tmp_path, "--config", config_file, "--name", "qwen", "--npu", "910B")
    source = json.loads(config_file.read_text())
    (config_map,) = by_kind(objects, "ConfigMap")
    served = json.loads(config_map["data"]["config.json"])
    # The device plugin shows the allocated NPUs as 0..n-1 inside the container; everything else is unchanged.
    assert served["BackendConfig"]["npuDeviceIds"] == [[0, 1]]
    assert served["BackendConfig"]["multiNodesInferEnabled"] is False
    served["BackendConfig"]["npuDeviceIds"] = source["BackendConfig"]["npuDeviceIds"]
    served["BackendConfig"]["multiNodesInferEnabled"] = source["BackendConfig"]["multiNodesInferEnabled"]
    assert served == source
    assert config_map["data"]["start.sh"] == (REPO_ROOT / "templates" / "k8s" / "start.sh").read_text()

    (deployment,) = by_kind(objects, "Deployment")
    box = container(deployment)
    assert box["resources"]["limits"] == {"huawei.com/Ascend910": "2"}
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    management = source["ServerConfig"]["managementPort"]
    assert box["startupProbe"]["httpGet"] == {"path": "/health", "port": management}
    assert box["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": management}
    assert box["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": management}
    # The start-up window covers the weights at the assumed load speed, and at least 10 minutes.
    window = box["startupProbe"]["periodSeconds"] * box["startupProbe"]["failureThreshold"]
    assert window >= 600
    env = env_of(deployment)
    assert env["MIES_CONFIG_JSON_PATH"] == "/mindie-pack/config.json"
    assert env["MIES_CONTAINER_IP"] == {"fieldRef": {"fieldPath": "status.podIP"}}
    assert env["MINDIE_PACK_DAEMON"].endswith("/mindie-service/bin/mindieservice_daemon")
    assert "RANK_TABLE_FILE" not in env
    pod = deployment["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in box["volumeMounts"]}
    weights = source["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["modelWeightPath"]
    assert mounts[weights]["readOnly"] is True and "/dev/shm" in mounts and "/usr/local/Ascend/driver" in mounts
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["model"]["hostPath"] == {"path": weights, "type": "Directory"}
    assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "1Gi"}
    assert "hostNetwork" not in pod and "hostIPC" not in pod
    (service,) = by_kind(objects, "Service")
    assert service["spec"]["ports"] == [{"name": "business", "port": source["ServerConfig"]["port"],
                                         "targetPort": "business"}]
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]


def test_310p_mindie_3_pvc_and_options(cli: Callable[..., Any], config_file: Path, tmp_path: Path) -> None:
    objects = render(cli, tmp_path, "--config", config_file, "--npu", "310p", "--mindie-version", "3.0.0",
                     "--model-pvc", "models", "--startup-window", "3600", "--host-ipc",
                     "--env", "NPU_MEMORY_FRACTION=0.9")
    (deployment,) = by_kind(objects, "Deployment")
    box = container(deployment)
    assert box["resources"]["requests"] == {"huawei.com/Ascend310P": "2"}
    assert box["startupProbe"]["periodSeconds"] * box["startupProbe"]["failureThreshold"] == 3600
    env = env_of(deployment)
    assert env["MINDIE_PACK_DAEMON"] == "mindie_llm_server"
    assert "mindie-service" not in env["MINDIE_PACK_SET_ENV"]  # 3.0 ships no mindie-service/set_env.sh
    assert env["NPU_MEMORY_FRACTION"] == "0.9"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["hostIPC"] is True
    assert {v["name"]: v for v in pod["volumes"]}["model"] == {
        "name": "model", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}}


def test_multi_server_semantics(cli: Callable[..., Any], config_file: Path, tmp_path: Path) -> None:
    table = rank_table(3)
    path = tmp_path / "ranktable.json"
    path.write_text(json.dumps(table))
    objects = render(cli, tmp_path, "--config", config_file, "--ranktable", path, "--node-names", "n1,n2,n3",
                     "--name", "big")
    (config_map,) = by_kind(objects, "ConfigMap")
    assert json.loads(config_map["data"]["ranktable.json"]) == table
    assert json.loads(config_map["data"]["config.json"])["BackendConfig"]["multiNodesInferEnabled"] is True
    master, worker = by_kind(objects, "StatefulSet")
    assert (master["metadata"]["name"], master["spec"]["replicas"]) == ("big-master", 1)
    assert (worker["metadata"]["name"], worker["spec"]["replicas"]) == ("big-worker", 2)
    for sts, nodes in ((master, ["n1"]), (worker, ["n2", "n3"])):
        pod = sts["spec"]["template"]["spec"]
        assert sts["spec"]["podManagementPolicy"] == "Parallel"
        assert pod["hostNetwork"] is True
        terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
        assert terms["nodeSelectorTerms"][0]["matchExpressions"][0]["values"] == nodes
        assert pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0][
            "topologyKey"] == "kubernetes.io/hostname"
        env = env_of(sts)
        assert env["RANK_TABLE_FILE"] == "/mindie-pack/ranktable.json"
        assert env["HCCL_CONNECT_TIMEOUT"] == "7200"
        assert {m["mountPath"] for m in container(sts)["volumeMounts"]} >= {"/etc/hccn.conf"}
    assert "startupProbe" in container(master) and "startupProbe" not in container(worker)
    services = {s["metadata"]["name"]: s for s in by_kind(objects, "Service")}
    assert services["big-nodes"]["spec"]["clusterIP"] == "None"
    assert services["big"]["spec"]["selector"]["mindie-pack/role"] == "master"


@pytest.mark.parametrize(("table_edit", "message"), [
    (lambda t: t.update(server_count="2"), "server_count: 2 but server_list has 3 servers"),
    (lambda t: t["server_list"][1]["device"][0].update(device_ip="192.168.0.10"), "device_ip: 192.168.0.10"),
    (lambda t: t["server_list"][2]["device"][0].update(rank_id="7"), "rank_id: expected 4"),
    (lambda t: t["server_list"][2].update(server_id="10.0.0.1"), "10.0.0.1 is listed twice"),
    # MindIE's own checks (ranktable_config.cpp): container_ip on every server, the same device count everywhere
    (lambda t: t["server_list"][1].pop("container_ip"), "server_list[1].container_ip: missing or empty"),
    (lambda t: t["server_list"][2]["device"].pop(), "server_list[2].device: 1 devices, but the first server has 2"),
])
def test_bad_rank_tables_are_refused_with_the_field(cli: Callable[..., Any], config_file: Path, tmp_path: Path,
                                                    table_edit: Callable[[dict[str, Any]], None], message: str) -> None:
    table = rank_table(3)
    table_edit(table)
    path = tmp_path / "ranktable.json"
    path.write_text(json.dumps(table))
    out = tmp_path / "m.yaml"
    result = cli("k8s", "render", "--config", config_file, "--image", "i", "--ranktable", path,
                 "--node-names", "a,b,c", "--output", out)
    assert result.exit_code == 2
    assert message in result.stderr and str(path) in result.stderr
    assert "Traceback" not in result.stderr and not out.exists()


def test_bad_inputs_are_one_line_each(cli: Callable[..., Any], config_file: Path, tmp_path: Path) -> None:
    table = tmp_path / "ranktable.json"
    table.write_text(json.dumps(rank_table(2)))
    not_json = tmp_path / "bad.json"
    not_json.write_text("{")
    cases = [
        (["--config", tmp_path / "missing.json"], "missing.json: config.json not found"),
        (["--config", not_json], "bad.json: config.json is not valid JSON"),
        (["--config", config_file, "--ranktable", table], "--node-names: the rank table has 2 servers"),
        (["--config", config_file, "--npu", "A100"], "--npu 'A100'"),
        (["--config", config_file, "--name", "Bad_Name"], "--name 'Bad_Name'"),
        (["--config", config_file, "--env", "novalue"], "--env 'novalue'"),
        (["--config", config_file, "--output", tmp_path], "is a directory"),
    ]
    for args, message in cases:
        result = cli("k8s", "render", "--image", "i", *args)
        assert result.exit_code == 2, (args, result.stderr)
        assert message in result.stderr, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_an_existing_manifest_file_is_backed_up(cli: Callable[..., Any], config_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "m.yaml"
    out.write_text("# edited by hand\n")
    result = cli("k8s", "render", "--config", config_file, "--image", "i", "--output", out, "--json")
    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert Path(summary["backup"]).read_text() == "# edited by hand\n"
    assert out.read_text().startswith("apiVersion: v1\nkind: ConfigMap")


def _run_start_script(tmp_path: Path, objects: list[dict[str, Any]], sts_name: str,
                      ip: str, host_ip: str | None = None) -> subprocess.CompletedProcess[str]:
    """Run the pod's start.sh as Kubernetes would: ConfigMap files mounted, the pod's env set (downward API values
    filled in), a stand-in daemon that prints what it was started with."""
    (config_map,) = by_kind(objects, "ConfigMap")
    mount = tmp_path / "mount"
    mount.mkdir(exist_ok=True)
    for key, text in config_map["data"].items():
        (mount / key).write_text(text)
    sts = next(o for o in objects if o["metadata"]["name"] == sts_name)
    env = {"PATH": os.environ["PATH"]}
    for name, value in env_of(sts).items():
        if isinstance(value, dict):  # the downward API: the pod's and the host's address
            env[name] = (host_ip or ip) if value["fieldRef"]["fieldPath"] == "status.hostIP" else ip
        else:
            env[name] = value.replace("/mindie-pack", str(mount))
    daemon = tmp_path / "mindieservice_daemon"
    daemon.write_text("#!/bin/bash\necho \"daemon in $PWD ip=$MIES_CONTAINER_IP table=$RANK_TABLE_FILE\"\n")
    daemon.chmod(0o755)
    env["MINDIE_PACK_DAEMON"] = str(daemon)
    env["MINDIE_PACK_WORKDIR"] = str(tmp_path / "work")
    env["MINDIE_PACK_SET_ENV"] = f"{tmp_path / 'missing_set_env.sh'} {tmp_path / 'set_env.sh'}"
    (tmp_path / "set_env.sh").write_text("export FROM_SET_ENV=1\n")
    return subprocess.run(["bash", str(mount / "start.sh")], env=env, capture_output=True, text=True, timeout=60)


def test_the_entrypoint_checks_each_pod_runs_on_its_rank_table_server(cli: Callable[..., Any], config_file: Path,
                                                                      tmp_path: Path) -> None:
    path = tmp_path / "ranktable.json"
    path.write_text(json.dumps(rank_table(3)))
    objects = render(cli, tmp_path, "--config", config_file, "--ranktable", path, "--node-names", "n1,n2,n3",
                     "--name", "big")
    ok = _run_start_script(tmp_path, objects, "big-master", "10.0.0.1")
    assert ok.returncode == 0, ok.stderr
    assert "master on 10.0.0.1" in ok.stdout
    assert f"daemon in {tmp_path / 'work'} ip=10.0.0.1 table=" in ok.stdout
    worker = _run_start_script(tmp_path, objects, "big-worker", "10.0.0.3")
    assert worker.returncode == 0 and "worker on 10.0.0.3" in worker.stdout
    misplaced = _run_start_script(tmp_path, objects, "big-master", "10.0.0.2")
    assert misplaced.returncode == 1
    assert "this master pod runs on 10.0.0.2, which is not its server" in misplaced.stderr
    assert "daemon in" not in misplaced.stdout


def test_apply_without_a_cluster_is_one_line(cli: Callable[..., Any], config_file: Path, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    result = cli("k8s", "render", "--config", config_file, "--image", "i", "--output", tmp_path / "m.yaml", "--apply")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --apply: no Kubernetes cluster configured")
    assert "Traceback" not in result.stderr


def test_mindie_llms_own_rank_table_is_accepted_and_rendered(cli: Callable[..., Any], config_file: Path,
                                                              tmp_path: Path) -> None:
    """The table MindIE-LLM 2.3.0's config-manager tests load (tests/fixtures/ranktable/SOURCES.md): our checks
    accept it, and the pods' entrypoint finds master and worker in it the way MindIE does."""
    table = REPO_ROOT / "tests" / "fixtures" / "ranktable" / "mindie-llm-2.3.0-ut-ranktable.json"
    from mindie_pack.env.ranktable import rank_table_problems

    assert rank_table_problems(json.loads(table.read_text())) == []
    config = json.loads(config_file.read_text())
    config["BackendConfig"]["npuDeviceIds"] = [list(range(8))]
    eight = tmp_path / "config8.json"
    eight.write_text(json.dumps(config))
    objects = render(cli, tmp_path, "--config", eight, "--ranktable", table, "--node-names", "a,b", "--name", "ut")
    assert by_kind(objects, "StatefulSet")[0]["spec"]["template"]["spec"]["containers"][0]["resources"][
        "limits"] == {"huawei.com/Ascend910": "8"}
    assert _run_start_script(tmp_path, objects, "ut-master", "127.0.0.1").returncode == 0
    worker = _run_start_script(tmp_path, objects, "ut-worker", "10.9.9.9", host_ip="61.47.2.184")
    assert worker.returncode == 0, worker.stderr  # found by HOST_IP == server_id
    assert _run_start_script(tmp_path, objects, "ut-worker", "127.0.0.1").returncode == 1


def test_https_management_plane_is_probed_over_https(cli: Callable[..., Any], config_file: Path,
                                                     tmp_path: Path) -> None:
    config = json.loads(config_file.read_text())
    config["ServerConfig"]["httpsEnabled"] = True
    path = tmp_path / "tls.json"
    path.write_text(json.dumps(config))
    box = container(by_kind(render(cli, tmp_path, "--config", path), "Deployment")[0])
    assert {box[p]["httpGet"].get("scheme") for p in ("startupProbe", "readinessProbe", "livenessProbe")} == {
        "HTTPS"}
