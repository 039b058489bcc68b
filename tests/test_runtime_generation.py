"""Generation behaviour of the CPU runtime: KV cache, sampling, stops, streaming, batches, bad input."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml

from mindie_pack.builder.assemble import build_model_dir
from mindie_pack.builder.options import BuildOptions
from mindie_pack.errors import PackError
from mindie_pack.runtime import CpuRuntime, GenerationParams, load_runtime
from mindie_pack.weights.ckpt_format import CkptWriter, read_record, scan_records

from conftest import CliResult

GREEDY8 = GenerationParams(max_new_tokens=8, ignore_eos=True)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mindie_pack.tiny_model import TinyModelSpec, make_tiny_model

    root = tmp_path_factory.mktemp("rt")
    hf_dir = make_tiny_model(root / "hf", TinyModelSpec(family="qwen2", dtype="float32"))
    out = root / "model"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=2))
    return out


@pytest.fixture(scope="module")
def runtime(built: Path) -> CpuRuntime:
    return load_runtime(built)


def test_kv_cache_decoding_equals_full_recompute(runtime: CpuRuntime) -> None:
    ids = runtime.encode("Hello world! How are you today?")
    cached = runtime.generate([ids], GenerationParams(max_new_tokens=12, ignore_eos=True))[0].token_ids
    sequence = list(ids)
    for _ in range(12):
        sequence.append(int(np.argmax(runtime.prompt_logits(sequence)[-1])))
    assert cached == sequence[len(ids):]


def test_sampling_is_reproducible_with_a_seed(runtime: CpuRuntime) -> None:
    ids = runtime.encode("The quick brown fox")
    params = GenerationParams(max_new_tokens=10, do_sample=True, temperature=1.5, seed=11, ignore_eos=True)
    first = runtime.generate([ids], params)[0].token_ids
    assert runtime.generate([ids], params)[0].token_ids == first
    others = {tuple(runtime.generate([ids], GenerationParams(max_new_tokens=10, do_sample=True, temperature=1.5,
                                                             seed=s, ignore_eos=True))[0].token_ids)
              for s in range(12, 16)}
    assert len(others | {tuple(first)}) > 1


def test_top_k_one_and_tiny_top_p_are_greedy(runtime: CpuRuntime) -> None:
    ids = runtime.encode("Hello world")
    greedy = runtime.generate([ids], GREEDY8)[0].token_ids
    top_k = GenerationParams(max_new_tokens=8, do_sample=True, top_k=1, seed=1, ignore_eos=True)
    top_p = GenerationParams(max_new_tokens=8, do_sample=True, top_p=1e-6, seed=2, ignore_eos=True)
    assert runtime.generate([ids], top_k)[0].token_ids == greedy
    assert runtime.generate([ids], top_p)[0].token_ids == greedy


def test_streaming_pieces_add_up_to_the_text(runtime: CpuRuntime) -> None:
    ids = runtime.encode("def main():")
    events: list[tuple[int, int, str]] = []
    result = runtime.generate([ids], GenerationParams(max_new_tokens=10, ignore_eos=True),
                              lambda i, t, piece: events.append((i, t, piece)))[0]
    assert [t for _, t, _ in events] == result.token_ids
    assert {i for i, _, _ in events} == {0}
    assert "".join(p for _, _, p in events) == result.text
    assert result.finish_reason == "length"


def test_stop_string_cuts_the_text(runtime: CpuRuntime) -> None:
    ids = runtime.encode("Hello world")
    full = runtime.generate([ids], GenerationParams(max_new_tokens=10, ignore_eos=True))[0]
    assert len(full.text) >= 3
    stop = full.text[1:3]
    stopped = runtime.generate([ids], GenerationParams(max_new_tokens=10, ignore_eos=True, stop=(stop,)))[0]
    assert stopped.finish_reason == "stop"
    assert stopped.text == full.text[: full.text.find(stop)]


def test_eos_ends_generation_and_is_not_in_the_text(runtime: CpuRuntime) -> None:
    ids = runtime.encode("Hello")
    forced = CpuRuntime(runtime.model_dir, runtime.model, runtime.tokenizer, eos_ids=())
    tokens = forced.generate([ids], GREEDY8)[0].token_ids
    eos = tokens[3]
    with_eos = CpuRuntime(runtime.model_dir, runtime.model, runtime.tokenizer, eos_ids=(eos,))
    result = with_eos.generate([ids], GenerationParams(max_new_tokens=8))[0]
    assert result.finish_reason == "eos"
    assert result.token_ids == tokens[: tokens.index(eos) + 1]
    assert result.text == runtime.decode(tokens[: tokens.index(eos)])


def test_a_batch_equals_single_prompts(runtime: CpuRuntime) -> None:
    prompts = [runtime.encode(t) for t in ("Hello world", "The quick brown fox jumps", "你好")]
    batch = runtime.generate(prompts, GREEDY8)
    assert [r.token_ids for r in batch] == [runtime.generate([p], GREEDY8)[0].token_ids for p in prompts]
    assert [r.prompt_token_ids for r in batch] == prompts


def test_tokenizer_round_trip_and_chat_template(runtime: CpuRuntime) -> None:
    text = "MindIE serves large language models on Ascend NPUs."
    assert runtime.decode(runtime.encode(text)) == text
    rendered = runtime.apply_chat_template([{"role": "user", "content": "hi"}])
    assert rendered == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    assert runtime.eos_token_ids == tuple(json.loads((runtime.model_dir / "generation_config.json").read_text())
                                          ["eos_token_id"])


def test_sentencepiece_tokenizer_of_baichuan2(tiny_models: Callable[..., Path], tmp_path: Path) -> None:
    from build_helpers import write_mindformers_checkout

    out = tmp_path / "bc"
    build_model_dir(BuildOptions(model_dir=tiny_models(family="baichuan2", num_kv_heads=4), output_dir=out,
                                 mindformers_src=write_mindformers_checkout(tmp_path / "mf")))
    runtime = load_runtime(out)
    ids = runtime.encode("Hello MindIE 你好")
    assert ids[0] != 1  # add_bos_token is false for Baichuan2
    assert runtime.decode(ids) == "Hello MindIE 你好"
    assert runtime.eos_token_ids == (2,)


def _copy(built: Path, tmp_path: Path) -> Path:
    """A relocated copy: the yaml's absolute paths are rewritten to the new place."""
    target = tmp_path / "copy"
    shutil.copytree(built, target)
    (yaml_path,) = list(target.glob("*.yaml"))
    yaml_path.write_text(yaml_path.read_text().replace(str(built), str(target)))
    return target


def test_a_moved_directory_is_refused(built: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(built, moved)
    with pytest.raises(PackError, match=f"load_checkpoint is {built / 'weights'}, not this directory's weights"):
        load_runtime(moved)


def test_missing_rank_is_named(built: Path, tmp_path: Path) -> None:
    broken = _copy(built, tmp_path)
    shutil.rmtree(broken / "weights" / "rank_1")
    with pytest.raises(PackError, match=r"rank_1/checkpoint_1\.ckpt: missing \(model_parallel=2"):
        load_runtime(broken)


def test_shape_disagreeing_with_the_yaml_is_named(built: Path, tmp_path: Path) -> None:
    broken = _copy(built, tmp_path)
    path = broken / "weights/rank_0/checkpoint_0.ckpt"
    records = list(scan_records(path))
    tensors = {r.name: read_record(path, r) for r in records}
    name = "model.layers.0.attention.wq.weight"
    tensors[name] = type(tensors[name])(tensors[name].dtype, tensors[name].array[:16].copy())
    with CkptWriter(path) as writer:
        for key, tensor in tensors.items():
            writer.write(key, tensor)
    with pytest.raises(PackError, match=r"tensor 'model.layers.0.attention.wq.weight' has shape \[16, 64\], "
                                        r"expected \[32, 64\]"):
        load_runtime(broken)


def test_unsupported_family_is_named(built: Path, tmp_path: Path) -> None:
    broken = _copy(built, tmp_path)
    config = json.loads((broken / "config.json").read_text())
    config["architectures"] = ["MistralForCausalLM"]
    config["model_type"] = "mistral"
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(PackError, match=r"config.json: unsupported model \['MistralForCausalLM'\]; supported "):
        load_runtime(broken)


def test_yaml_that_disagrees_with_config_is_named(built: Path, tmp_path: Path) -> None:
    broken = _copy(built, tmp_path)
    (yaml_path,) = list(broken.glob("*.yaml"))
    doc = yaml.safe_load(yaml_path.read_text())
    doc["model"]["model_config"]["hidden_size"] = 128
    yaml_path.write_text(yaml.safe_dump(doc))
    with pytest.raises(PackError, match=r"model_config.hidden_size is 128, config.json says 64"):
        load_runtime(broken)


def test_run_command_json(built: Path, cli: Callable[..., CliResult], runtime: CpuRuntime) -> None:
    result = cli("run", built, "Hello world", "-n", "5", "--json")
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    expected = runtime.generate([runtime.encode("Hello world")], GenerationParams(max_new_tokens=5))[0]
    assert data["token_ids"] == expected.token_ids
    assert data["text"] == expected.text
    assert data["generated_tokens"] == len(expected.token_ids)


def test_verify_run_reports_agreement(built: Path, cli: Callable[..., CliResult]) -> None:
    manifest = json.loads((built / "manifest.json").read_text())
    hf_dir = Path(next(r["path"] for r in manifest["inputs"] if r["path"].endswith("config.json"))).parent
    result = cli("verify", built, "--reference", hf_dir, "--run", "--tokens", "6", "--json")
    assert result.exit_code == 0, result.stderr
    checks = {c["name"]: c for c in json.loads(result.stdout)["checks"]}
    assert checks["run"]["ok"] is True
    assert "vs transformers; greedy 6 tokens agree" in checks["run"]["detail"]
    missing_reference = cli("verify", built, "--run")
    assert missing_reference.exit_code == 2
    assert "--run needs --reference" in missing_reference.stderr
