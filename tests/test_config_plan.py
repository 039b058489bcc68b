"""Capacity planning, checked by hand against real published model dimensions."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from mindie_pack.config import plan_capacity
from mindie_pack.errors import PackError

from conftest import CliResult

# Qwen2-7B (config.json as published): 28 layers, 28 heads, 4 KV heads, head_dim 128.
QWEN2_7B = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2",
            "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28,
            "num_attention_heads": 28, "num_key_value_heads": 4, "vocab_size": 152064, "torch_dtype": "bfloat16",
            "tie_word_embeddings": False, "max_position_embeddings": 32768, "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0}
# Llama-2-70B: 80 layers, 64 heads, 8 KV heads, head_dim 128.
LLAMA2_70B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
              "hidden_size": 8192, "intermediate_size": 28672, "num_hidden_layers": 80,
              "num_attention_heads": 64, "num_key_value_heads": 8, "vocab_size": 32000, "torch_dtype": "float16",
              "tie_word_embeddings": False, "max_position_embeddings": 4096, "rms_norm_eps": 1e-05}
GIB = 1024**3


def test_qwen2_7b_on_one_910b() -> None:
    plan = plan_capacity(QWEN2_7B, npu="910B", world_size=1, npu_mem_size_gb=8, block_size=128, max_seq_len=2560,
                         max_batch_size=200)
    # KV per token: 2 (K,V) x 28 layers x 4 heads x 128 x 2 bytes = 57,344 bytes.
    assert plan.kv_bytes_per_token_per_rank == 57344
    # num_blocks = 8 GiB // (128 x 4 x 128 x 2 x 2 x 28) = 8,589,934,592 // 7,340,032 = 1170.
    assert plan.kv_blocks == 1170
    assert plan.kv_tokens == 1170 * 128 == 149760
    # Weights: 7,615,616,512 parameters x 2 bytes (embed+lm_head 2x152064x3584, per layer q/o 3584^2, k/v
    # 3584x512, MLP 3x3584x18944, q/k/v biases 3584+2x512, norms 2x3584, final norm 3584).
    params = 2 * 152064 * 3584 + 28 * (2 * 3584 * 3584 + 2 * 3584 * 512 + 3 * 3584 * 18944 + 3584 + 1024 + 2 * 3584) \
        + 3584
    assert params == 7615616512
    # stored as built: bfloat16, except the RMSNorm weights (MindFormers declares them float32: 2 more bytes each)
    norms = 28 * 2 * 3584 + 3584
    assert plan.weight_bytes_per_rank == params * 2 + norms * 2 == 15231641600
    assert plan.weights_gb_per_rank == round((params * 2 + norms * 2) / GIB, 3)
    assert plan.fits_in_hbm  # 14.2 GiB + 8 + 3 <= 64
    assert plan.errors == []
    assert plan.warnings == ["maxBatchSize x maxSeqLen = 512000 tokens exceed the KV cache (149760 tokens): full "
                             "batches of long requests will queue or be preempted"]
    assert plan.smallest_world_size == 1


def test_llama2_70b_needs_several_cards() -> None:
    plan8 = plan_capacity(LLAMA2_70B, npu="910B", world_size=8, npu_mem_size_gb=8, block_size=128,
                          max_seq_len=4096, max_batch_size=32)
    # KV per token per rank: 2 x 80 x (8/8) x 128 x 2 = 40,960 bytes; blocks: 8 GiB // (128 x 1 x 128 x 2 x 2 x 80).
    assert plan8.kv_bytes_per_token_per_rank == 40960
    assert plan8.kv_blocks == 8 * GIB // (128 * 1 * 128 * 2 * 2 * 80) == 1638
    assert plan8.fits_in_hbm and plan8.errors == []
    one = plan_capacity(LLAMA2_70B, npu="910B", world_size=1, npu_mem_size_gb=8, max_seq_len=4096)
    assert not one.fits_in_hbm
    assert one.errors[0].startswith("weights 128.")  # ~129 GiB of float16 weights on one card
    assert one.smallest_world_size == 4  # 32 GiB of weights per card on 4 x 64 GB


def test_seq_len_that_cannot_fit_is_an_error() -> None:
    plan = plan_capacity(QWEN2_7B, npu="910B", world_size=1, npu_mem_size_gb=1, max_seq_len=32768)
    # 1 GiB // 7,340,032 = 146 blocks = 18,688 tokens < 32,768.
    assert plan.kv_tokens == 18688
    assert plan.errors == ["maxSeqLen 32768 does not fit in the KV cache at all (18688 tokens in 146 blocks of 128)"]


def test_unknown_npu_is_refused() -> None:
    with pytest.raises(PackError, match="--npu 'H100'"):
        plan_capacity(QWEN2_7B, npu="H100", world_size=1, npu_mem_size_gb=8)


def test_plan_cli_json(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    (tmp_path / "config.json").write_text(json.dumps(QWEN2_7B))
    result = cli("config", "plan", tmp_path, "--world-size", "4", "--npu-mem-size", "16", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["kv_blocks"] == 16 * GIB // (128 * 1 * 128 * 2 * 2 * 28)
    failing = cli("config", "plan", tmp_path, "--npu-mem-size", "1", "--max-seq-len", "32768")
    assert failing.exit_code == 1
    assert "does not fit in the KV cache at all" in failing.stdout


# Llama-3-8B (config.json as published)
LLAMA3_8B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
             "intermediate_size": 14336, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
             "vocab_size": 128256, "torch_dtype": "bfloat16", "tie_word_embeddings": False,
             "max_position_embeddings": 8192, "rms_norm_eps": 1e-05, "rope_theta": 500000.0}


def test_llama3_8b_on_8_cards_replicates_embedding_and_lm_head() -> None:
    plan = plan_capacity(LLAMA3_8B, world_size=8, npu_mem_size_gb=8)
    # per layer: q, o 4096x4096; k, v 1024x4096; gate, up, down 3 x 4096x14336 = 218,103,808 params, 1/8 per rank
    layers = 32 * (2 * 4096 * 4096 + 2 * 1024 * 4096 + 3 * 4096 * 14336) // 8 * 2
    embeddings = 2 * 128256 * 4096 * 2  # embedding and lm_head, whole on every rank (vocab_emb_dp, the default)
    norms = (32 * 2 + 1) * 4096 * 4  # float32
    assert plan.weight_bytes_per_rank == layers + embeddings + norms == 3847241728  # 3.85 GB, not 1.87
    assert not plan.embedding_split and not plan.lm_head_split
    split = plan_capacity(LLAMA3_8B, world_size=8, npu_mem_size_gb=8, vocab_emb_dp=False)
    assert split.weight_bytes_per_rank == layers + embeddings // 8 + norms


def test_world_size_the_build_refuses_is_refused() -> None:
    with pytest.raises(PackError, match=r"worldSize 16 must divide num_key_value_heads \(8\); possible tp values: "
                                        r"1, 2, 4, 8"):
        plan_capacity(LLAMA3_8B, world_size=16, npu_mem_size_gb=8)


def test_smallest_world_size_is_never_one_the_build_refuses() -> None:
    # 20 GB cards: Llama-2-70B needs more than 8 (16 would fit, but 8 KV heads cannot be split 16 ways)
    plan = plan_capacity(LLAMA2_70B, hbm_gb=20, world_size=8, npu_mem_size_gb=1, max_seq_len=4096)
    assert plan.smallest_world_size is None
    assert "no world size the build accepts (1, 2, 4, 8) fits this model in 20 GB per NPU" in plan.warnings
    roomy = plan_capacity(LLAMA2_70B, hbm_gb=30, world_size=8, npu_mem_size_gb=1, max_seq_len=4096)
    assert roomy.smallest_world_size == 8


def test_head_dim_the_network_cannot_hold_is_refused() -> None:
    with pytest.raises(PackError, match=r"head_dim 256 differs from hidden_size / num_attention_heads"):
        plan_capacity({**LLAMA3_8B, "head_dim": 256}, world_size=1, npu_mem_size_gb=8)
    assert plan_capacity({**LLAMA3_8B, "head_dim": 128}, world_size=1, npu_mem_size_gb=8).kv_bytes_per_token_per_rank \
        == 2 * 32 * 8 * 128 * 2


def test_bad_dtype_is_one_line(tmp_path: Path, cli: Callable[..., CliResult]) -> None:
    (tmp_path / "config.json").write_text(json.dumps(QWEN2_7B))
    result = cli("config", "plan", tmp_path, "--dtype", "int8")
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --dtype 'int8': expected one of bfloat16, float16, float32"
