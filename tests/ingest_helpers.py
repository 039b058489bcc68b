"""Inputs made by real MindSpore for the ingest/export tests.

A tiny network whose Parameters are named exactly as MindFormers' legacy LlamaForCausalLM names them (the names
come from MindSpore's own Cell tree), initialised from a tiny HF model, trained one step with a real MindSpore
optimizer (nn.AdamWeightDecay) and saved with mindspore.save_checkpoint, so the optimizer state has MindSpore's
names. Rank files are written by mindspore.transform_checkpoints. A real strategy file cannot be produced on CPU
(compiling a semi-auto-parallel graph raises "Invalid backend: CPU", mindspore-ckpt.md §3.3), so the strategies
are built with MindSpore's own protobuf classes (mindspore.train.node_strategy_pb2), as the training would write
them: one file per rank, with its pipeline stage.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import yaml
from safetensors.numpy import load_file

# MindFormers name -> HF name, written out from the reference (mindspore-ckpt.md §4.1) independently of models/.
_MF_TO_HF = [
    (r"model\.tok_embeddings\.embedding_weight", "model.embed_tokens.weight"),
    (r"model\.norm_out\.weight", "model.norm.weight"),
    (r"lm_head\.weight", "lm_head.weight"),
    (r"model\.layers\.(\d+)\.attention\.wq\.(weight|bias)", r"model.layers.\1.self_attn.q_proj.\2"),
    (r"model\.layers\.(\d+)\.attention\.wk\.(weight|bias)", r"model.layers.\1.self_attn.k_proj.\2"),
    (r"model\.layers\.(\d+)\.attention\.wv\.(weight|bias)", r"model.layers.\1.self_attn.v_proj.\2"),
    (r"model\.layers\.(\d+)\.attention\.wo\.weight", r"model.layers.\1.self_attn.o_proj.weight"),
    (r"model\.layers\.(\d+)\.feed_forward\.w1\.weight", r"model.layers.\1.mlp.gate_proj.weight"),
    (r"model\.layers\.(\d+)\.feed_forward\.w3\.weight", r"model.layers.\1.mlp.up_proj.weight"),
    (r"model\.layers\.(\d+)\.feed_forward\.w2\.weight", r"model.layers.\1.mlp.down_proj.weight"),
    (r"model\.layers\.(\d+)\.attention_norm\.weight", r"model.layers.\1.input_layernorm.weight"),
    (r"model\.layers\.(\d+)\.ffn_norm\.weight", r"model.layers.\1.post_attention_layernorm.weight"),
]


def mf_to_hf(name: str) -> str:
    for pattern, target in _MF_TO_HF:
        if re.fullmatch(pattern, name):
            return re.sub(pattern, target, name)
    raise KeyError(name)


def hf_to_mf(name: str) -> str:
    for pattern, target in _MF_TO_HF:
        hf_pattern = re.escape(target).replace(r"\\1", r"(\d+)").replace(r"\\2", r"(weight|bias)")
        match = re.fullmatch(hf_pattern, name)
        if match:
            mf = pattern
            for group in match.groups():
                mf = re.sub(r"\([^)]*\)", group, mf, count=1)
            return mf.replace("\\.", ".")
    raise KeyError(name)


def make_network(hf_dir: Path, lora: dict[str, object] | None = None):  # noqa: ANN201 - a mindspore Cell
    """The MindFormers-named network, with the HF model's values. `lora`: {"rank", "alpha", "targets"} puts a
    MindPet LoRADense on the named attention projections (base weights frozen, as a LoRA fine-tune does)."""
    import mindspore as ms
    from mindspore import Parameter, Tensor, nn, ops

    hf = load_file(str(hf_dir / "model.safetensors"))
    values = {hf_to_mf(k): v.astype(np.float32) for k, v in hf.items()}
    n_layers = 1 + max(int(m.group(1)) for k in values if (m := re.match(r"model\.layers\.(\d+)\.", k)))

    def param(name: str, tensor_name: str) -> Parameter:
        return Parameter(Tensor(values[tensor_name]), name=name)

    class Linear(nn.Cell):
        def __init__(self, prefix: str) -> None:
            super().__init__()
            self.weight = param("weight", f"{prefix}.weight")
            self.has_bias = f"{prefix}.bias" in values
            if self.has_bias:
                self.bias = param("bias", f"{prefix}.bias")

        def construct(self, x):  # noqa: ANN001, ANN202
            y = ops.matmul(x, self.weight.T)
            return y + self.bias if self.has_bias else y

    def projection(prefix: str, short: str) -> nn.Cell:
        if lora is None or short not in lora["targets"]:  # type: ignore[operator]
            return Linear(prefix)
        from mindpet.delta.lora import LoRADense

        w = values[f"{prefix}.weight"]
        cell = LoRADense(w.shape[1], w.shape[0], lora_rank=int(lora["rank"]), lora_alpha=float(lora["alpha"]),
                         has_bias=f"{prefix}.bias" in values, param_init_type=ms.float32,
                         compute_dtype=ms.float32, weight_init=Tensor(w),
                         bias_init=Tensor(values[f"{prefix}.bias"]) if f"{prefix}.bias" in values else "zeros")
        cell.weight.requires_grad = False
        if f"{prefix}.bias" in values:
            cell.bias.requires_grad = False
        return cell

    class Norm(nn.Cell):
        def __init__(self, name: str) -> None:
            super().__init__()
            self.weight = param("weight", name)

        def construct(self, x):  # noqa: ANN001, ANN202
            return x * ops.rsqrt((x * x).mean(-1, keep_dims=True) + 1e-6) * self.weight

    class Attention(nn.Cell):
        def __init__(self, i: int) -> None:
            super().__init__()
            p = f"model.layers.{i}.attention"
            self.wq, self.wk, self.wv = (projection(f"{p}.{s}", s) for s in ("wq", "wk", "wv"))
            self.wo = projection(f"{p}.wo", "wo")

        def construct(self, x):  # noqa: ANN001, ANN202
            q, k, v = self.wq(x), self.wk(x), self.wv(x)
            k = ops.tile(k, (1, 1, q.shape[-1] // k.shape[-1]))
            v = ops.tile(v, (1, 1, q.shape[-1] // v.shape[-1]))
            return self.wo(ops.sigmoid(q * k) * v)

    class FeedForward(nn.Cell):
        def __init__(self, i: int) -> None:
            super().__init__()
            p = f"model.layers.{i}.feed_forward"
            self.w1, self.w2, self.w3 = Linear(f"{p}.w1"), Linear(f"{p}.w2"), Linear(f"{p}.w3")

        def construct(self, x):  # noqa: ANN001, ANN202
            return self.w2(ops.silu(self.w1(x)) * self.w3(x))

    class Layer(nn.Cell):
        def __init__(self, i: int) -> None:
            super().__init__()
            self.attention = Attention(i)
            self.feed_forward = FeedForward(i)
            self.attention_norm = Norm(f"model.layers.{i}.attention_norm.weight")
            self.ffn_norm = Norm(f"model.layers.{i}.ffn_norm.weight")

        def construct(self, x):  # noqa: ANN001, ANN202
            x = x + self.attention(self.attention_norm(x))
            return x + self.feed_forward(self.ffn_norm(x))

    class Embedding(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.embedding_weight = param("embedding_weight", "model.tok_embeddings.embedding_weight")

        def construct(self, ids):  # noqa: ANN001, ANN202
            return ops.gather(self.embedding_weight, ids, 0)

    class Model(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.tok_embeddings = Embedding()
            self.layers = nn.CellList([Layer(i) for i in range(n_layers)])
            self.norm_out = Norm("model.norm_out.weight")

        def construct(self, ids):  # noqa: ANN001, ANN202
            x = self.tok_embeddings(ids)
            for layer in self.layers:
                x = layer(x)
            return self.norm_out(x)

    class CausalLM(nn.Cell):
        def __init__(self) -> None:
            super().__init__()
            self.model = Model()
            self.lm_head = Linear("lm_head")

        def construct(self, ids, labels):  # noqa: ANN001, ANN202
            logits = self.lm_head(self.model(ids))
            return ops.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1))

    return CausalLM()


def train_one_step_and_save(net, path: Path) -> dict[str, np.ndarray]:  # noqa: ANN001
    """One AdamWeightDecay step, then save as MindFormers' checkpoint callback does (network + optimizer state,
    with its epoch/step/loss-scale values appended). Returns the trained parameters by name."""
    import mindspore as ms
    from mindspore import Tensor, nn

    optimizer = nn.AdamWeightDecay(net.trainable_params(), learning_rate=1e-2, weight_decay=0.01)
    step = nn.TrainOneStepCell(net, optimizer)
    rng = np.random.default_rng(1)
    ids = Tensor(rng.integers(0, 300, (2, 8)).astype(np.int32))
    labels = Tensor(rng.integers(0, 300, (2, 8)).astype(np.int32))
    step(ids, labels)
    path.parent.mkdir(parents=True, exist_ok=True)
    ms.save_checkpoint(step, str(path), append_dict={
        "epoch_num": 1, "step_num": 1, "loss_scale": 1024.0, "scale_sense": 1024.0,
        "current_iterator_step": 1, "last_overflow_iterator_step": 0,
    })
    return {p.name: p.asnumpy().copy() for p in net.get_parameters()}


# -- strategies (node_strategy_pb2) and rank files (transform_checkpoints) -----------------------------------


def strategy_map(stage: int, layouts: dict[str, dict[str, object]]):  # noqa: ANN201
    from mindspore.train import node_strategy_pb2 as pb

    strategy = pb.ParallelStrategyMap()
    strategy.current_stage = 0
    item = strategy.parallel_strategy_item.add()
    item.node_name = "Default/network-CausalLM/lm_head-Linear/MatMul-op0"
    item.parallel_strategys.stage = stage
    item.parallel_strategys.parallel_strategy.add().dim.extend([1, 2])
    for name, layout in layouts.items():
        entry = strategy.parallel_layout_item.add()
        entry.param_name = name
        parallel = entry.parallel_layouts
        parallel.dev_matrix.add().dim.extend(layout["dev_matrix"])  # type: ignore[arg-type]
        parallel.tensor_map.add().dim.extend(layout["tensor_map"])  # type: ignore[arg-type]
        parallel.param_split_shape.add()
        parallel.indices_offset.add()
        parallel.field = 0
        parallel.opt_weight_shard_step = int(layout.get("opt_step", 0))  # type: ignore[call-overload]
        parallel.opt_weight_shard_size = int(layout.get("opt_size", 0))  # type: ignore[call-overload]
    return strategy


def _split_axis(name: str) -> int | None:
    base = name.split(".", 1)[1] if name.startswith(("adam_m.", "adam_v.")) else name
    if re.search(r"attention\.w[qkv]\.(weight|bias)$|feed_forward\.w[13]\.weight$|lm_head\.weight$", base):
        return 0
    if re.search(r"attention\.wo\.weight$|feed_forward\.w2\.weight$", base):
        return 1
    if re.search(r"mindpet_delta_lora_b$", base):
        return 0
    return None


def layouts_for(names: dict[str, tuple[int, ...]], dp: int, mp: int, opt_shard: bool) -> dict[str, dict[str, object]]:
    """MindFormers' legacy Llama under semi_auto_parallel: column weights split on dim 0, row weights on dim 1
    (tensor_map counts dev_matrix axes from the right: 0 = mp); with opt_shard the split weights are also
    optimizer-sharded over dp (opt_weight_shard_size dp, step mp)."""
    out = {}
    for name, shape in names.items():
        axis = _split_axis(name)
        tensor_map = [-1] * len(shape)
        if axis is not None:
            tensor_map[axis] = 0
        layout: dict[str, object] = {"dev_matrix": [dp, mp], "tensor_map": tensor_map}
        if opt_shard and dp > 1 and axis is not None and shape[0] % (dp * (mp if axis == 0 else 1)) == 0:
            layout.update(opt_size=dp, opt_step=mp)
        out[name] = layout
    return out


def write_training_output(
    full_ckpt: Path, out: Path, *, dp: int = 1, mp: int = 2, stages: int = 1, opt_shard: bool = False,
    layer_stage: dict[int, int] | None = None,
) -> Path:
    """A MindFormers training output: output/checkpoint/rank_{i}/llama_rank_{i}-1_1.ckpt and
    output/strategy/ckpt_strategy_rank_{i}.ckpt, rank files split by mindspore.transform_checkpoints."""
    import mindspore as ms

    params = ms.load_checkpoint(str(full_ckpt))
    shapes = {name: tuple(p.shape) for name, p in params.items()
              if not name.startswith(("global_step", "learning_rate", "epoch_num", "step_num", "loss_scale",
                                      "scale_sense", "current_iterator_step", "last_overflow_iterator_step"))}
    del params
    work = out.parent / f".{out.name}-work"
    shutil.rmtree(work, ignore_errors=True)
    (work / "src" / "rank_0").mkdir(parents=True)
    shutil.copyfile(full_ckpt, work / "src" / "rank_0" / "full.ckpt")
    stage_dir = work / "stages"
    stage_dir.mkdir()
    layouts = layouts_for(shapes, dp, mp, opt_shard)

    def stage_of(name: str) -> int:
        if stages == 1:
            return 0
        match = re.search(r"model\.layers\.(\d+)\.", name)
        if match:
            return (layer_stage or {}).get(int(match.group(1)), 0)
        return 0 if "tok_embeddings" in name else stages - 1

    stage_files = []
    for stage in range(stages):
        mine = {n: lay for n, lay in layouts.items() if stage_of(n) == stage}
        path = stage_dir / f"stage_{stage}.ckpt"
        path.write_bytes(strategy_map(stage, mine).SerializeToString())
        stage_files.append(path)
    if stages > 1:
        merged = work / "merged.ckpt"
        ms.parallel.merge_pipeline_strategys(str(stage_dir), str(merged))
        dst_strategy = merged
    else:
        dst_strategy = stage_files[0]
    ms.transform_checkpoints(str(work / "src"), str(work / "dst"), "checkpoint_", None, str(dst_strategy))
    devices = dp * mp
    (out / "checkpoint").mkdir(parents=True)
    (out / "strategy").mkdir()
    for rank in range(devices * stages):
        (out / "checkpoint" / f"rank_{rank}").mkdir()
        shutil.move(work / "dst" / f"rank_{rank}" / f"checkpoint_{rank}.ckpt",
                    out / "checkpoint" / f"rank_{rank}" / f"llama_rank_{rank}-1_1.ckpt")
        shutil.copyfile(stage_files[rank // devices], out / "strategy" / f"ckpt_strategy_rank_{rank}.ckpt")
    shutil.rmtree(work)
    return out


def write_training_yaml(path: Path, rank: int, alpha: float, targets: str) -> Path:
    path.write_text(yaml.safe_dump({
        "run_mode": "finetune",
        "model": {"model_config": {"type": "LlamaConfig", "pet_config": {
            "pet_type": "lora", "lora_rank": rank, "lora_alpha": alpha, "lora_dropout": 0.0,
            "target_modules": targets}}, "arch": {"type": "LlamaForCausalLM"}},
    }))
    return path
