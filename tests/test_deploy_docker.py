"""The container spec of `deploy --docker`, exactly; and a real run when a Docker engine is available."""

from __future__ import annotations

from pathlib import Path

import pytest

from mindie_pack.deploy.docker_spec import container_spec


def test_container_spec_is_exact(tmp_path: Path) -> None:
    spec = container_spec(image="mindie:2.0.RC1-800I-A2-py311-openeuler24.03-lts", name="mindie-qwen",
                          devices=[0, 3], model_dir=Path("/data/models/qwen"), config_path=tmp_path / "config.json",
                          environment={"MINDIE_LLM_FRAMEWORK_BACKEND": "MS", "MS_SCHED_PORT": "8119"},
                          deployment_dir=tmp_path)
    kwargs = spec.sdk_kwargs()
    assert kwargs["devices"] == ["/dev/davinci0:/dev/davinci0:rwm", "/dev/davinci3:/dev/davinci3:rwm",
                                 "/dev/davinci_manager:/dev/davinci_manager:rwm",
                                 "/dev/devmm_svm:/dev/devmm_svm:rwm", "/dev/hisi_hdc:/dev/hisi_hdc:rwm"]
    assert kwargs["network_mode"] == "host"
    assert kwargs["shm_size"] == "1g"
    assert kwargs["detach"] is True
    volumes = kwargs["volumes"]
    assert volumes["/data/models/qwen"] == {"bind": "/data/models/qwen", "mode": "ro"}
    assert volumes[str(tmp_path / "config.json")] == {"bind": str(tmp_path / "config.json"), "mode": "ro"}
    assert volumes[str(tmp_path)] == {"bind": str(tmp_path), "mode": "rw"}
    for host in ("/usr/local/Ascend/driver", "/usr/local/dcmi", "/usr/local/bin/npu-smi"):
        assert volumes[host] == {"bind": host, "mode": "ro"}
    assert kwargs["environment"] == {"MINDIE_LLM_FRAMEWORK_BACKEND": "MS", "MS_SCHED_PORT": "8119",
                                     "MIES_CONFIG_JSON_PATH": str(tmp_path / "config.json")}
    command = kwargs["command"]
    assert command[:2] == ["bash", "-c"]
    assert command[2].startswith("source /usr/local/Ascend/ascend-toolkit/set_env.sh && source "
                                 "/usr/local/Ascend/nnal/atb/set_env.sh && source /usr/local/Ascend/mindie/set_env.sh")
    assert command[2].endswith("exec /usr/local/Ascend/mindie/latest/mindie-service/bin/mindieservice_daemon")
    assert kwargs["working_dir"] == str(tmp_path)


def _engine_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
        return True
    except Exception:  # noqa: BLE001
        return False


@pytest.mark.skipif(not _engine_available(), reason="no Docker engine on this machine")
def test_container_starts_with_the_spec(tmp_path: Path) -> None:
    import docker

    spec = container_spec(image="busybox", name="mindie-pack-spec-test", devices=[], model_dir=tmp_path,
                          config_path=tmp_path / "config.json", environment={}, deployment_dir=tmp_path)
    (tmp_path / "config.json").write_text("{}")
    kwargs = spec.sdk_kwargs()
    kwargs.update(command=["true"], devices=[], volumes={str(tmp_path): {"bind": str(tmp_path), "mode": "rw"}})
    container = docker.from_env().containers.run(**kwargs)
    try:
        assert container.wait(timeout=60)["StatusCode"] == 0
    finally:
        container.remove(force=True)
