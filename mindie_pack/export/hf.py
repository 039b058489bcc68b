"""Write a Hugging Face folder (safetensors shards + index, config.json, generation_config.json, tokenizer)
from a built model directory (ranks merged back by the build's split rules), a MindSpore checkpoint, a
MindFormers training output, or an HF folder plus a LoRA adapter.

Streaming: the tensor plan (names, shapes, dtypes) is known before any data is read, so each shard's header is
written first and then one tensor at a time is read, merged, cast and appended.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindie_pack.batching import consecutive_batches
from mindie_pack.builder.assemble import BuildProgress
from mindie_pack.builder.hf_model import HFModel
from mindie_pack.builder.inputs import InputOptions, input_model, open_input
from mindie_pack.builder.manifest import MANIFEST_NAME
from mindie_pack.builder.model_dir import BuiltModelDir, open_model_dir
from mindie_pack.builder.shards import merged_tensor, rank_indexes
from mindie_pack.builder.staging import StagedDirectory
from mindie_pack.builder.tokenizer import TOKENIZER_FILES
from mindie_pack.errors import PackError
from mindie_pack.models import TensorSpec, hf_tensor_parts
from mindie_pack.weights.dtypes import DType, RawTensor, cast, target_dtype
from mindie_pack.weights.hf_source import SAFETENSORS_INDEX, HFWeights
from mindie_pack.weights.safetensors_writer import SafetensorsWriter
from mindie_pack.weights.tensor_source import ComputedWeights, virtual_entry

Layout = list[tuple[str, DType, tuple[int, ...]]]
DEFAULT_SHARD_BYTES = 5 * 1024**3  # transformers' save_pretrained default max_shard_size ("5GB")


@dataclass
class ExportResult:
    output_dir: Path
    source_kind: str
    dtype: str
    files: list[dict[str, Any]]
    tensors: int
    notes: list[str] = field(default_factory=list)
    input: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        return {"output_dir": str(self.output_dir), "source": self.source_kind, "dtype": self.dtype,
                "tensors": self.tensors, "files": self.files, "notes": self.notes, "input": self.input}


def is_built_dir(path: Path) -> bool:
    return path.is_dir() and (path / MANIFEST_NAME).is_file() and (path / "weights").is_dir()


def built_dir_weights(built: BuiltModelDir) -> Any:
    """A built directory's weights in HF naming: rank shards joined by the build's own split rules."""
    if built.profile == "mf-safetensors":
        return HFWeights(built.weights_dir)
    indexes = rank_indexes(built)
    weights = ComputedWeights(built.weights_dir, [built.weights_dir / f"rank_{r}" for r in range(built.tp)])
    for parts in hf_tensor_parts(built.specs):
        dtype = parts.parts[0].dtype

        def read(parts: tuple[TensorSpec, ...] = parts.parts, dtype: DType = dtype) -> RawTensor:
            import numpy as np

            pieces = [cast(merged_tensor(built, indexes, spec), dtype) for spec in parts]
            return pieces[0] if len(pieces) == 1 else RawTensor(dtype, np.concatenate([p.array for p in pieces]))

        weights.add(virtual_entry(parts.source, dtype, parts.shape, built.weights_dir), read)
    return weights


def export_hf(
    source: Path,
    output: Path,
    *,
    inputs: InputOptions | None = None,
    dtype: str | None = None,
    force: bool = False,
    shard_bytes: int = DEFAULT_SHARD_BYTES,
    progress: BuildProgress | None = None,
) -> ExportResult:
    progress = progress or BuildProgress()
    inputs = inputs or InputOptions(source)
    notes: list[str] = []
    report: dict[str, Any] = {}
    extras: list[str] = []
    if is_built_dir(source):
        if inputs.lora or inputs.strategy or inputs.hf_config:
            raise PackError(f"{source}: a built model directory carries its own config; --lora, --strategy and "
                            "--hf-config apply to checkpoint inputs only")
        built = open_model_dir(source)
        model: HFModel = built.model
        weights = built_dir_weights(built)
        stored = built.dtype
        kind = f"built ({built.profile}, tp {built.tp})"
        meta_dir = source
        specs = built.specs
    else:
        model = input_model(inputs)
        opened = open_input(inputs, model)
        weights, kind, notes, extras = opened.weights, opened.kind, opened.notes, opened.extras
        report = opened.summary()
        meta_dir = model.path
        plan = model.family.plan_tp(model.dims, 1, None)
        specs = model.family.tensor_specs(model.dims, plan, DType.FLOAT32)
        stored = None
    order = [parts.source for parts in hf_tensor_parts(specs)] + extras
    for name in order:
        if name not in weights:
            raise PackError(f"{source}: tensor {name!r} is missing")
    # "As stored": the build's param dtype, or the dtype of the input's embedding (MindFormers keeps norms in
    # float32 whatever the weights are, so the first tensor, the embedding, is the one that tells).
    target = _target_dtype(dtype, stored or weights.entries[order[0]].dtype)
    layout = [(name, target if weights.entries[name].dtype.is_float and name not in extras
               else weights.entries[name].dtype, weights.entries[name].shape) for name in order]
    shards = consecutive_batches(layout, _nbytes, shard_bytes)
    final = output.absolute()
    files: list[dict[str, Any]] = []
    progress.stage("exporting weights")
    progress.start(sum(_nbytes(item) for item in layout))
    with StagedDirectory(final, force=force) as staging:
        assert staging.path is not None
        root = staging.path
        names = ["model.safetensors"] if len(shards) == 1 else [
            f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
        weight_map: dict[str, str] = {}
        total = 0
        for file_name, shard in zip(names, shards, strict=True):
            with SafetensorsWriter(root / file_name, shard) as writer:
                for name, want, _ in shard:
                    tensor = weights.read(name)
                    if tensor.dtype is not want:
                        tensor = cast(tensor, want)
                    writer.write(name, tensor)
                    weight_map[name] = file_name
                    progress.advance(tensor.array.nbytes)
                total += writer.data_bytes
            files.append({"path": file_name, "size": (root / file_name).stat().st_size})
        if len(shards) > 1:
            (root / SAFETENSORS_INDEX).write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
        config = dict(model.config)
        config["torch_dtype"] = target.info.name
        if "dtype" in config:
            config["dtype"] = target.info.name
        (root / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        copied = []
        for name in ("generation_config.json", *TOKENIZER_FILES):
            if (meta_dir / name).is_file():
                shutil.copyfile(meta_dir / name, root / name)
                copied.append(name)
        if not any(name in copied for name in ("tokenizer.json", "tokenizer.model", "vocab.json")):
            notes.append(f"{meta_dir}: no tokenizer files to copy; add them to {final} before loading a tokenizer")
        staging.commit()
    return ExportResult(final, kind, target.info.name, files, len(order), notes, report)


def _target_dtype(requested: str | None, stored: DType) -> DType:
    return stored if requested is None else target_dtype(requested, None, "--dtype")


def _nbytes(item: tuple[str, DType, tuple[int, ...]]) -> int:
    nbytes = item[1].info.itemsize
    for dim in item[2]:
        nbytes *= dim
    return nbytes
