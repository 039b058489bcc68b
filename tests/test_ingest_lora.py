"""LoRA merged into base weights before sharding: PEFT adapters (oracle: PEFT's own merge_and_unload) and
MindPet LoRA from a MindFormers fine-tune (oracle: MindPet's LoRADense forward, run by MindSpore).

Tolerance: the merge computes B @ A in float32 and rounds W + scale * B @ A once to the stored dtype; PEFT on CPU
rounds the delta to bf16 first and then the sum. Merged bf16 weights therefore agree with PEFT's within one bf16
unit in the last place, and the logits of the two merged models within 2e-2 * max|logit| (bf16 keeps 8
significant bits, ~4e-3 relative, accumulated over 2 layers), with identical greedy tokens.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from ingest_helpers import make_network, mf_to_hf, train_one_step_and_save, write_training_output, write_training_yaml
from safetensors.numpy import load_file as load_numpy
from safetensors.torch import load_file, save_file

PROMPT_IDS = [[5, 17, 42, 99, 7, 250, 3, 64]]


@pytest.fixture(scope="module")
def peft_case(tiny_models: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    hf = tiny_models(family="qwen2", dtype="bfloat16")
    root = tmp_path_factory.mktemp("peft")
    model = AutoModelForCausalLM.from_pretrained(hf, dtype=torch.bfloat16)
    peft_model = get_peft_model(model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj",
                                                                                     "down_proj"]))
    torch.manual_seed(0)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:  # PEFT initialises B to zero; a trained adapter has B != 0
                param.normal_(std=0.05)
    adapter = root / "adapter"
    peft_model.save_pretrained(adapter)
    merged = peft_model.merge_and_unload().eval()
    with torch.no_grad():
        logits = merged(torch.tensor(PROMPT_IDS)).logits.float()
    weights = {k: v.clone() for k, v in merged.state_dict().items()}
    return {"hf": hf, "adapter": adapter, "logits": logits, "weights": weights}


def _logits(folder: Path) -> torch.Tensor:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.bfloat16).eval()
    with torch.no_grad():
        return model(torch.tensor(PROMPT_IDS)).logits.float()


def _assert_close_to_peft(folder: Path, case: dict[str, object]) -> None:
    exported = load_file(str(folder / "model.safetensors"))
    weights: dict[str, torch.Tensor] = case["weights"]  # type: ignore[assignment]
    for name, theirs in weights.items():
        if name == "lm_head.weight" and name not in exported:
            continue
        ours = exported[name]
        assert ours.dtype == torch.bfloat16
        ulps = (ours.view(torch.int16).int() - theirs.view(torch.int16).int()).abs().max().item()
        assert ulps <= 1, name
    ref: torch.Tensor = case["logits"]  # type: ignore[assignment]
    got = _logits(folder)
    assert (got - ref).abs().max().item() <= 2e-2 * ref.abs().max().item()
    assert torch.equal(got.argmax(-1), ref.argmax(-1))


def test_export_hf_with_peft_adapter_matches_merge_and_unload(cli, peft_case: dict[str, object],
                                                               tmp_path: Path) -> None:
    out = tmp_path / "merged"
    result = cli("export", peft_case["hf"], "--to", "hf", "--output", out, "--lora", peft_case["adapter"])
    assert result.exit_code == 0, result.stderr
    assert "merged the PEFT LoRA adapter" in result.stderr and "into 6 weights" in result.stderr
    _assert_close_to_peft(out, peft_case)
    # Untargeted weights are the base model's, bit for bit.
    base = load_file(str(Path(peft_case["hf"]) / "model.safetensors"))  # type: ignore[arg-type]
    assert torch.equal(load_file(str(out / "model.safetensors"))["model.layers.0.self_attn.k_proj.weight"],
                       base["model.layers.0.self_attn.k_proj.weight"])


def test_build_tp2_with_peft_adapter_then_export(cli, peft_case: dict[str, object], tmp_path: Path) -> None:
    built, back = tmp_path / "built", tmp_path / "back"
    result = cli("build", "--model", peft_case["hf"], "--lora", peft_case["adapter"], "--tp", 2, "--output", built)
    assert result.exit_code == 0, result.stderr
    manifest = json.loads((built / "manifest.json").read_text())
    assert "adapter_model.safetensors" in json.dumps(manifest["inputs"])  # hashed like every other input
    assert cli("export", built, "--to", "hf", "--output", back).exit_code == 0
    _assert_close_to_peft(back, peft_case)


def _refused(cli, out: Path, *args: object) -> str:
    result = cli(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert not out.exists()
    return lines[0]


def test_peft_adapter_that_does_not_fit_the_base(cli, peft_case: dict[str, object], tmp_path: Path) -> None:
    adapter = tmp_path / "adapter"
    shutil.copytree(peft_case["adapter"], adapter)  # type: ignore[arg-type]
    config = json.loads((adapter / "adapter_config.json").read_text())
    (adapter / "adapter_config.json").write_text(json.dumps({**config, "r": 8}))
    line = _refused(cli, tmp_path / "o", "export", peft_case["hf"], "--output", tmp_path / "o", "--lora", adapter)
    assert "adapter_model.safetensors" in line and "lora_A.weight" in line and "r = 8" in line
    (adapter / "adapter_config.json").write_text(json.dumps(config))
    tensors = load_file(str(adapter / "adapter_model.safetensors"))
    renamed = {k.replace("layers.1.mlp.down_proj", "layers.1.mlp.fc9"): v for k, v in tensors.items()}
    save_file(renamed, str(adapter / "adapter_model.safetensors"))
    line = _refused(cli, tmp_path / "o", "build", "--model", peft_case["hf"], "--output", tmp_path / "o",
                    "--lora", adapter)
    assert "'model.layers.1.mlp.fc9.weight'" in line and "lora_A" in line
    wrong_shape = {k: (v[:, :32].contiguous() if k.endswith("q_proj.lora_A.weight") else v) for k, v in tensors.items()}
    save_file(wrong_shape, str(adapter / "adapter_model.safetensors"))
    line = _refused(cli, tmp_path / "o", "export", peft_case["hf"], "--output", tmp_path / "o", "--lora", adapter)
    assert "q_proj" in line and "[64, 32]" in line and "[64, 64]" in line


# -- MindPet LoRA from a MindFormers fine-tune ------------------------------------------------------------

LORA = {"rank": 2, "alpha": 4.0, "targets": ("wq", "wv")}


@pytest.fixture(scope="module")
def mindpet_case(tiny_models: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    root = tmp_path_factory.mktemp("mindpet")
    hf = tiny_models(family="qwen2", dtype="float32")
    net = make_network(hf, lora=LORA)
    ckpt = root / "lora.ckpt"
    params = train_one_step_and_save(net, ckpt)
    yaml_path = write_training_yaml(root / "finetune_qwen_lora.yaml", 2, 4.0, ".*wq|.*wv")
    cells = {name: cell for name, cell in net.cells_and_names() if name.endswith((".wq", ".wv"))}
    return {"hf": hf, "ckpt": ckpt, "params": params, "yaml": yaml_path, "cells": cells, "root": root}


def test_mindpet_lora_merged_equals_lora_dense_forward(cli, mindpet_case: dict[str, object], tmp_path: Path) -> None:
    import mindspore as ms

    out = tmp_path / "merged"
    result = cli("export", mindpet_case["ckpt"], "--to", "hf", "--output", out, "--hf-config", mindpet_case["hf"],
                 "--train-yaml", mindpet_case["yaml"])
    assert result.exit_code == 0, result.stderr
    assert "merged MindPet LoRA into 4 weights" in result.stderr
    exported = load_numpy(str(out / "model.safetensors"))
    params: dict[str, np.ndarray] = mindpet_case["params"]  # type: ignore[assignment]
    assert not any("lora" in name for name in exported)
    x = np.random.default_rng(3).standard_normal((5, 64)).astype(np.float32)
    cells: dict[str, object] = mindpet_case["cells"]  # type: ignore[assignment]
    assert len(cells) == 4
    for module, cell in cells.items():
        expected = cell(ms.Tensor(x)).asnumpy()  # MindPet's own LoRADense: x W^T + b + scale * (x A^T) B^T
        weight = exported[mf_to_hf(f"{module}.weight")].astype(np.float64)
        bias = exported[mf_to_hf(f"{module}.bias")].astype(np.float64)
        np.testing.assert_allclose(x.astype(np.float64) @ weight.T + bias, expected, rtol=1e-5, atol=1e-5)
        assert not np.array_equal(weight, params[f"{module}.weight"])  # the update is really in there
    for name, value in params.items():
        if "lora" not in name and not name.endswith((".wq.weight", ".wv.weight")):
            assert exported[mf_to_hf(name)].tobytes() == value.tobytes(), name


def test_mindpet_lora_in_a_sharded_training_output(cli, mindpet_case: dict[str, object], tmp_path: Path) -> None:
    run = write_training_output(mindpet_case["ckpt"], tmp_path / "output", dp=1, mp=2)  # type: ignore[arg-type]
    shutil.copyfile(mindpet_case["yaml"], run / "finetune_qwen_lora.yaml")  # found next to the output
    single, sharded = tmp_path / "single", tmp_path / "sharded"
    assert cli("export", mindpet_case["ckpt"], "--output", single, "--hf-config", mindpet_case["hf"],
               "--train-yaml", mindpet_case["yaml"]).exit_code == 0
    result = cli("export", run, "--output", sharded, "--hf-config", mindpet_case["hf"])
    assert result.exit_code == 0, result.stderr
    assert (single / "model.safetensors").read_bytes() == (sharded / "model.safetensors").read_bytes()
    built = tmp_path / "built"  # merged before sharding: the tp 2 rank files are slices of the merged weights
    result = cli("build", "--model", run, "--hf-config", mindpet_case["hf"], "--tp", 2, "--output", built)
    assert result.exit_code == 0, result.stderr
    assert cli("verify", built, "--reference", single).exit_code == 0


def test_mindpet_lora_that_does_not_match_its_config(cli, mindpet_case: dict[str, object], tmp_path: Path) -> None:
    root: Path = mindpet_case["root"]  # type: ignore[assignment]
    base = ("export", mindpet_case["ckpt"], "--output", tmp_path / "o", "--hf-config", mindpet_case["hf"])
    line = _refused(cli, tmp_path / "o", *base)
    assert "mindpet_delta_lora" in line and "--train-yaml" in line
    wrong_rank = write_training_yaml(root / "rank4.yaml", 4, 4.0, ".*wq|.*wv")
    line = _refused(cli, tmp_path / "o", *base, "--train-yaml", wrong_rank)
    assert "mindpet_delta_lora_a" in line and "lora_rank = 4" in line and "rank 2" in line
    wrong_targets = write_training_yaml(root / "wk.yaml", 2, 4.0, ".*wk|.*wo")
    line = _refused(cli, tmp_path / "o", *base, "--train-yaml", wrong_targets)
    assert "attention.wq" in line and ".*wk|.*wo" in line
