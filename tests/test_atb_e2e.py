"""build -> config -> deploy -> smoke -> stop on the emulator for MindIE 2.3 ms, 2.3 atb and 3.0 atb; the text served
greedily equals what transformers generates from the same HF folder (the independent oracle)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from mindie_pack.deploy.process import process_alive
from mindie_pack.emulator.install import install_emulator
from mindie_pack.tiny_model import TinyModelSpec, make_tiny_model

from conftest import CliResult
from deploy_helpers import free_port_block, kill_recorded_daemon

pytestmark = pytest.mark.slow
Cli = Callable[..., CliResult]
PROMPT = "MindIE serves the Hugging Face folder"
TOKENS = 8


@pytest.fixture(scope="module")
def hf_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    # bfloat16 weights: what atb loads as is; transformers computes from exactly these values in float32.
    # Qwen3 with an explicit head_dim unlike hidden_size / num_heads, as the real checkpoints have.
    root = tmp_path_factory.mktemp("atb")
    return {"qwen2": make_tiny_model(root / "qwen2", TinyModelSpec(family="qwen2", dtype="bfloat16")),
            "qwen3": make_tiny_model(root / "qwen3", TinyModelSpec(family="qwen3", dtype="bfloat16", head_dim=24))}


@pytest.fixture(autouse=True)
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("MINDIE_PACK_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("MINDIE_LLM_BENCHMARK_ENABLE", raising=False)  # 3.0 perf fields off, as by default
    yield tmp_path / "state"
    kill_recorded_daemon()


def transformers_text(hf_dir: Path) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32)
    model.generation_config.eos_token_id = None
    ids = tokenizer(PROMPT, return_tensors="pt").input_ids
    out = model.generate(ids, max_new_tokens=TOKENS, do_sample=False, pad_token_id=0)
    return str(tokenizer.decode(out[0, ids.shape[1]:].tolist(), skip_special_tokens=True))


@pytest.mark.parametrize(("mindie_version", "profile", "family"), [
    ("2.3.0", "mf-ckpt", "qwen2"), ("2.3.0", "atb", "qwen2"), ("3.0.0", "atb", "qwen2"), ("3.0.0", "atb", "qwen3")],
    ids=["2.3-ms", "2.3-atb", "3.0-atb", "3.0-atb-qwen3"])
def test_build_config_deploy_smoke_stop(mindie_version: str, profile: str, family: str, hf_dirs: dict[str, Path],
                                        tmp_path: Path, cli: Cli) -> None:
    hf_dir = hf_dirs[family]
    backend = "ms" if profile.startswith("mf") else "atb"
    installed = install_emulator(tmp_path / "Ascend", mindie_version=mindie_version, backend=backend)
    is_30 = mindie_version.startswith("3")
    where = (["--mindie-python", str(installed.mindie_service / "bin" / "python")] if is_30
             else ["--mindie-home", str(installed.mindie_service)])
    model_dir = tmp_path / "model"
    built = cli("build", "--model", hf_dir, "-o", model_dir, "--profile", profile, "--name", "tiny",
                "--mindie-version", mindie_version, "--json")
    assert built.exit_code == 0, built.stderr
    assert cli("verify", model_dir).exit_code == 0
    if backend == "atb":  # the HF folder prepared for atb: safetensors untouched, torch_dtype written
        config = json.loads((model_dir / "config.json").read_text())
        assert config["torch_dtype"] == "bfloat16"
        assert (model_dir / "model.safetensors").read_bytes() == (hf_dir / "model.safetensors").read_bytes()

    rendered = cli("config", "render", "-o", tmp_path / "config.json", "--model-dir", model_dir, "--mindie-version",
                   mindie_version)
    assert rendered.exit_code == 0, rendered.stderr
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]["backendType"] == backend
    assert cli("config", "validate", tmp_path / "config.json", "--mindie-version", mindie_version).exit_code == 0

    port = free_port_block()
    plan = cli("deploy", "--model-dir", model_dir, *where, "--port", str(port), "--dry-run", "--json")
    assert plan.exit_code == 0, plan.stderr
    planned = json.loads(plan.stdout)
    expected_config = (installed.mindie_service / "lib").glob("python3*/site-packages/mindie_llm/conf/config.json") \
        if is_30 else None
    if is_30:  # 3.0 reads <site-packages>/mindie_llm/conf/config.json (mindie_llm/server/main.py:50)
        assert Path(planned["config_path"]) == next(iter(expected_config))
        assert "mindie_llm_server" in planned["host_command"]
        assert "MIES_CONFIG_JSON_PATH" not in planned["host_command"]
    else:
        assert "mindieservice_daemon" in planned["host_command"]

    deployed = cli("deploy", "--model-dir", model_dir, *where, "--port", str(port), "--timeout", "300", "--json")
    assert deployed.exit_code == 0, deployed.stderr[-3000:]
    state = json.loads(deployed.stdout)
    served = json.loads(Path(state["config_path"]).read_text())
    model_config = served["BackendConfig"]["ModelDeployConfig"]["ModelConfig"][0]
    assert model_config["backendType"] == backend
    assert oct(Path(state["config_path"]).stat().st_mode & 0o777) == "0o640"
    if is_30:
        assert "HealthCheckConfig" in served["ServerConfig"] and "tlsPkPwd" not in served["ServerConfig"]
        backups = list(Path(state["config_path"]).parent.glob("config.json.*.bak"))
        assert len(backups) == 1  # the shipped config, kept

    assert "Daemon start success!" in cli("logs", "-n", "20").stdout

    smoke = cli("smoke", "--json")
    assert smoke.exit_code == 0, smoke.stdout[-2000:] + smoke.stderr[-2000:]

    response = httpx.post(f"{state['business_url']}/generate", timeout=120, json={
        "inputs": PROMPT, "parameters": {"do_sample": False, "max_new_tokens": TOKENS}})
    assert response.status_code == 200, response.text
    assert response.json()["generated_text"] == transformers_text(hf_dir)
    # the release's wire format: 3.0.0 adds the OpenAI performance fields only with MINDIE_LLM_BENCHMARK_ENABLE 1|2
    # (@8b4871ad sri/single_req_vllm_openai_infer_interface.cpp:985-1002), 2.3.0 always (@40fb0630 :1000-1010)
    model_id = httpx.get(f"{state['business_url']}/v1/models", timeout=30).json()["data"][0]["id"]
    chat = httpx.post(f"{state['business_url']}/v1/chat/completions", timeout=120, json={
        "model": model_id, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 2})
    assert chat.status_code == 200, chat.text
    assert ("prefill_time" in chat.json()) is not is_30 and ("batch_size" in chat.json()["usage"]) is not is_30

    stopped = cli("stop", "--json")
    assert stopped.exit_code == 0
    assert not process_alive(state["pid"])
    assert cli("status").exit_code == 2  # nothing recorded any more
