"""MindSpore checkpoints and MindFormers training outputs in, HF out and MindIE model directories out.

The inputs are made by real MindSpore on CPU (tests/ingest_helpers.py): a MindFormers-named network trained one
step with nn.AdamWeightDecay and saved with mindspore.save_checkpoint; rank files split from it by
mindspore.transform_checkpoints. The strategy files are built with MindSpore's own protobuf classes
(mindspore.train.node_strategy_pb2), because a real one cannot be produced on CPU: compiling a semi-auto-parallel
graph there fails with "Invalid backend: CPU" (mindspore-ckpt.md §3.3). The oracle is MindSpore's own view of
the trained parameters (mindspore.load_checkpoint of the complete checkpoint), mapped to HF names by the test's
own table.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from ingest_helpers import make_network, mf_to_hf, train_one_step_and_save, write_training_output
from safetensors.numpy import load_file

from mindie_pack.tiny_model import write_safetensors
from mindie_pack.weights.dtypes import DType, RawTensor

STATE_NAMES = {"global_step", "learning_rate", "epoch_num", "step_num", "loss_scale", "scale_sense",
               "current_iterator_step", "last_overflow_iterator_step"}


@dataclass
class Trained:
    hf: Path  # the HF folder the network started from (config.json + tokenizer: the --hf-config)
    ckpt: Path  # complete checkpoint, as saved by MindSpore
    params: dict[str, np.ndarray]  # MindFormers name -> trained value (MindSpore's load_checkpoint)
    others: dict[str, int]  # everything else in the file -> bytes
    oracle_hf: Path  # HF folder holding the trained values (for the HF build route and verify)


@pytest.fixture(scope="module")
def trained(tiny_models: Callable[..., Path], tmp_path_factory: pytest.TempPathFactory) -> Trained:
    import mindspore as ms

    root = tmp_path_factory.mktemp("ms")
    hf = tiny_models(family="qwen2", dtype="float32")
    ckpt = root / "zoo" / "rank_0" / "qwen_tiny.ckpt"
    train_one_step_and_save(make_network(hf), ckpt)
    loaded = ms.load_checkpoint(str(ckpt))
    params = {k: v.asnumpy() for k, v in loaded.items() if k.startswith(("model.", "lm_head."))}
    others = {k: v.asnumpy().nbytes for k, v in loaded.items() if k not in params}
    oracle = root / "oracle_hf"
    shutil.copytree(hf, oracle, ignore=shutil.ignore_patterns("*.safetensors"))
    write_safetensors(oracle / "model.safetensors",
                      {mf_to_hf(k): RawTensor(DType.FLOAT32, v) for k, v in params.items()})
    return Trained(hf, ckpt, params, others, oracle)


@pytest.fixture(scope="module")
def outputs(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("train-out")
    return {
        "tp2-dp2-optshard": write_training_output(trained.ckpt, root / "tp", dp=2, mp=2, opt_shard=True),
        "pp2-tp2": write_training_output(trained.ckpt, root / "pp", dp=1, mp=2, stages=2, layer_stage={0: 0, 1: 1}),
    }


def _assert_equals_trained(export_dir: Path, trained: Trained) -> None:
    exported = load_file(str(export_dir / "model.safetensors"))
    assert set(exported) == {mf_to_hf(name) for name in trained.params}
    for name, value in trained.params.items():
        got = exported[mf_to_hf(name)]
        assert got.dtype == value.dtype and got.shape == value.shape, name
        assert got.tobytes() == value.tobytes(), name


def test_training_really_changed_every_weight(trained: Trained) -> None:
    start = load_file(str(trained.hf / "model.safetensors"))
    assert all(not np.array_equal(start[mf_to_hf(k)], v) for k, v in trained.params.items())
    assert {n for n in trained.others if n.startswith(("adam_m.", "adam_v."))}
    assert STATE_NAMES <= set(trained.others)


def test_export_single_ckpt_drops_training_state_and_lists_it(cli, trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "hf-out"
    result = cli("export", trained.ckpt, "--to", "hf", "--output", out, "--hf-config", trained.hf, "--json")
    assert result.exit_code == 0, result.stderr
    _assert_equals_trained(out, trained)
    summary = json.loads(result.stdout)
    dropped = summary["input"]["dropped_training_state"]
    assert dropped == trained.others  # every optimizer/loop tensor, with its size as MindSpore reports it
    assert summary["input"]["dropped_bytes"] == sum(trained.others.values())
    config = json.loads((out / "config.json").read_text())
    assert config["torch_dtype"] == "float32"
    for name in ("tokenizer.json", "generation_config.json"):
        assert (out / name).read_bytes() == (trained.hf / name).read_bytes()


def test_keep_pattern_keeps_matching_state(cli, trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "hf-out"
    result = cli("export", trained.ckpt, "--output", out, "--hf-config", trained.hf, "--keep", "global_step",
                 "--keep", "epoch_*", "--json")
    assert result.exit_code == 0, result.stderr
    exported = load_file(str(out / "model.safetensors"))
    assert exported["global_step"].tolist() == [1] and exported["epoch_num"].tolist() == 1
    summary = json.loads(result.stdout)["input"]
    assert set(summary["kept_by_pattern"]) == {"global_step", "epoch_num"}
    assert "global_step" not in summary["dropped_training_state"]


@pytest.mark.parametrize("layout", ["tp2-dp2-optshard", "pp2-tp2"])
def test_training_output_ranks_merge_by_strategy(cli, trained: Trained, outputs: dict[str, Path], layout: str,
                                                 tmp_path: Path) -> None:
    out = tmp_path / "hf-out"
    result = cli("export", outputs[layout], "--to", "hf", "--output", out, "--hf-config", trained.hf)
    assert result.exit_code == 0, result.stderr
    _assert_equals_trained(out, trained)
    assert "merged 4 ranks" in result.stderr


@pytest.mark.parametrize("tp", [1, 2])
def test_build_from_training_output_equals_build_from_hf(cli, trained: Trained, outputs: dict[str, Path], tp: int,
                                                         tmp_path: Path) -> None:
    from_ms, from_hf = tmp_path / "from-ms", tmp_path / "from-hf"
    result = cli("build", "--model", outputs["pp2-tp2"], "--hf-config", trained.hf, "--tp", tp, "--output", from_ms)
    assert result.exit_code == 0, result.stderr
    assert "dropped" in result.stderr
    assert cli("build", "--model", trained.oracle_hf, "--tp", tp, "--output", from_hf).exit_code == 0
    import mindspore as ms

    for rank in range(tp):  # tensor by tensor as MindSpore reads them (record order follows the input files)
        rel = Path("weights") / f"rank_{rank}" / f"checkpoint_{rank}.ckpt"
        ours, theirs = ms.load_checkpoint(str(from_ms / rel)), ms.load_checkpoint(str(from_hf / rel))
        assert sorted(ours) == sorted(theirs)
        for name, param in theirs.items():
            assert ours[name].dtype == param.dtype, name
            same = ours[name].asnumpy().tobytes() == param.asnumpy().tobytes()
            assert same, f"{rel}: {name} differs"
    verify = cli("verify", from_ms, "--reference", trained.oracle_hf, "--json")
    assert verify.exit_code == 0, verify.stdout
    manifest = json.loads((from_ms / "manifest.json").read_text())
    assert manifest["tensors"]["input"]["kind"] == "mindspore"


# -- bad inputs: one line naming the file and tensor, nothing written ---------------------------------------


def _refused(cli, out: Path, *args: object) -> str:
    result = cli(*args)
    assert result.exit_code == 2, (result.stdout, result.stderr)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not out.exists() and not list(out.parent.glob(f".{out.name}*"))
    return lines[0]


def test_missing_rank_is_named(cli, trained: Trained, outputs: dict[str, Path], tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(outputs["tp2-dp2-optshard"], broken)
    shutil.rmtree(broken / "checkpoint" / "rank_3")
    line = _refused(cli, tmp_path / "o", "export", broken, "--output", tmp_path / "o", "--hf-config", trained.hf)
    assert "rank" in line and "4 ranks" in line and "3 rank folder(s)" in line
    shutil.rmtree(broken / "checkpoint" / "rank_1")
    line = _refused(cli, tmp_path / "o", "build", "--model", broken, "--output", tmp_path / "o", "--hf-config",
                    trained.hf)
    assert f"{broken / 'checkpoint' / 'rank_1'}: missing" in line


def test_strategy_that_does_not_match_the_rank_files(cli, trained: Trained, outputs: dict[str, Path],
                                                     tmp_path: Path) -> None:
    # The pipeline run's strategy (2 stages x 2 devices) against the rank files of the dp2 x mp2 run.
    line = _refused(cli, tmp_path / "o", "export", outputs["tp2-dp2-optshard"], "--output", tmp_path / "o",
                    "--hf-config", trained.hf, "--strategy", outputs["pp2-tp2"] / "strategy")
    assert "rank_" in line and "tensor 'model." in line and "strategy" in line


def test_ckpt_without_config_is_refused(cli, trained: Trained, tmp_path: Path) -> None:
    line = _refused(cli, tmp_path / "o", "export", trained.ckpt, "--output", tmp_path / "o")
    assert str(trained.ckpt) in line and "--hf-config" in line
    line = _refused(cli, tmp_path / "o", "build", "--model", trained.ckpt, "--output", tmp_path / "o")
    assert "--hf-config" in line


def test_ckpt_with_a_config_of_another_model(cli, trained: Trained, tiny_models: Callable[..., Path],
                                             tmp_path: Path) -> None:
    deeper = tiny_models(family="qwen2", dtype="float32", num_layers=3)
    line = _refused(cli, tmp_path / "o", "export", trained.ckpt, "--output", tmp_path / "o", "--hf-config", deeper)
    assert str(trained.ckpt) in line and "'model.layers.2." in line
    wider = tiny_models(family="qwen2", dtype="float32", intermediate_size=64)
    line = _refused(cli, tmp_path / "o", "build", "--model", trained.ckpt, "--output", tmp_path / "o",
                    "--hf-config", wider)
    assert "feed_forward.w1.weight" in line and "[128, 64]" in line and "[64, 64]" in line


def test_bfloat16_training_output_is_merged_bit_exactly(cli, trained: Trained, tmp_path: Path) -> None:
    """bf16 weights: MindSpore writes them (cast by its own Cast op), splits them (transform_checkpoints casts to
    fp32 and back), and our merge must give back exactly MindSpore's bf16 values."""
    import mindspore as ms

    full = tmp_path / "bf16" / "rank_0" / "model.ckpt"
    full.parent.mkdir(parents=True)
    loaded = ms.load_checkpoint(str(trained.ckpt))
    ms.save_checkpoint([{"name": name, "data": ms.Tensor(p.asnumpy()).astype(ms.bfloat16)}
                        if name in trained.params else {"name": name, "data": p} for name, p in loaded.items()],
                       str(full))
    expected = {name: p.asnumpy() for name, p in ms.load_checkpoint(str(full)).items() if name in trained.params}
    run = write_training_output(full, tmp_path / "output", dp=2, mp=2, opt_shard=True)
    out = tmp_path / "hf-out"
    result = cli("export", run, "--output", out, "--hf-config", trained.hf, "--dtype", "float32")
    assert result.exit_code == 0, result.stderr
    exported = load_file(str(out / "model.safetensors"))
    for name, value in expected.items():  # MindSpore's asnumpy() of a bf16 tensor is its exact float32 value
        assert exported[mf_to_hf(name)].tobytes() == value.astype(np.float32).tobytes(), name
    back = tmp_path / "hf-bf16"
    assert cli("export", run, "--output", back, "--hf-config", trained.hf, "--dtype", "bfloat16").exit_code == 0
    assert json.loads((back / "config.json").read_text())["torch_dtype"] == "bfloat16"


def test_build_refuses_keep_and_uses_the_latest_step(cli, trained: Trained, outputs: dict[str, Path],
                                                     tmp_path: Path) -> None:
    line = _refused(cli, tmp_path / "o", "build", "--model", trained.ckpt, "--hf-config", trained.hf,
                    "--output", tmp_path / "o", "--keep", "global_step")
    assert "--keep: global_step" in line and "mindie-pack export" in line
    run = tmp_path / "run"
    shutil.copytree(outputs["tp2-dp2-optshard"], run)
    for rank in range(4):  # an older step next to each rank's file: step 9 < step 10 (not lexicographic)
        folder = run / "checkpoint" / f"rank_{rank}"
        (folder / f"llama_rank_{rank}-1_1.ckpt").rename(folder / f"llama_rank_{rank}-1_10.ckpt")
        (folder / f"llama_rank_{rank}-1_9.ckpt").write_bytes(b"not read")
    out = tmp_path / "hf-out"
    result = cli("export", run, "--output", out, "--hf-config", trained.hf)
    assert result.exit_code == 0, result.stderr
    assert "using the latest step llama_rank_0-1_10.ckpt" in result.stderr
    _assert_equals_trained(out, trained)


def test_model_zoo_folder_with_config_and_ckpt(cli, trained: Trained, tmp_path: Path) -> None:
    """A zoo download: config.json, tokenizer and the complete .ckpt in one folder; no --hf-config needed."""
    zoo = tmp_path / "zoo"
    shutil.copytree(trained.hf, zoo, ignore=shutil.ignore_patterns("*.safetensors"))
    shutil.copyfile(trained.ckpt, zoo / "qwen_tiny.ckpt")
    out = tmp_path / "hf-out"
    result = cli("export", zoo, "--output", out)
    assert result.exit_code == 0, result.stderr
    _assert_equals_trained(out, trained)
    built = tmp_path / "built"
    assert cli("build", "--model", zoo, "--tp", 2, "--output", built).exit_code == 0
    assert cli("verify", built, "--reference", trained.oracle_hf).exit_code == 0


def test_json_strategy_files(cli, trained: Trained, outputs: dict[str, Path], tmp_path: Path) -> None:
    """MindSpore also writes strategies as .json (strategy_ckpt_config save_file *.json): same merge."""
    from mindspore.train import node_strategy_pb2

    run = tmp_path / "run"
    shutil.copytree(outputs["pp2-tp2"], run)
    for proto in sorted((run / "strategy").glob("*.ckpt")):
        parsed = node_strategy_pb2.ParallelStrategyMap()
        parsed.ParseFromString(proto.read_bytes())
        as_json = {
            "current_stage": parsed.current_stage,
            "parallel_strategy_item": {item.node_name: {"stage": item.parallel_strategys.stage,
                                                        "parallel_strategy": [list(s.dim) for s in
                                                                              item.parallel_strategys.parallel_strategy]}
                                       for item in parsed.parallel_strategy_item},
            "parallel_layout_item": {item.param_name: {
                "dev_matrix": list(item.parallel_layouts.dev_matrix[0].dim),
                "tensor_map": list(item.parallel_layouts.tensor_map[0].dim),
                "param_split_shape": [], "indices_offset": [], "field": item.parallel_layouts.field,
                "opt_weight_shard_step": item.parallel_layouts.opt_weight_shard_step,
                "opt_weight_shard_size": item.parallel_layouts.opt_weight_shard_size,
            } for item in parsed.parallel_layout_item},
        }
        proto.with_suffix(".json").write_text(json.dumps(as_json))
        proto.unlink()
    out = tmp_path / "hf-out"
    result = cli("export", run, "--output", out, "--hf-config", trained.hf)
    assert result.exit_code == 0, result.stderr
    _assert_equals_trained(out, trained)
