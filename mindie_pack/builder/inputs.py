"""What `build --model` (and `export`) can read, all presented as one tensor source in HF naming:

- a Hugging Face folder (config.json + safetensors/bin), as before;
- a MindSpore `.ckpt` in MindFormers names, or a MindFormers training output (rank folders + strategy files),
  with the HF config.json/tokenizer it belongs to given by `--hf-config DIR`;
- any of these plus a PEFT LoRA adapter (`--lora DIR`), merged into the base weights on read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindie_pack.builder.hf_model import HFModel, load_hf_model
from mindie_pack.builder.mf_yaml import hf_folder_from_mindformers_yaml, is_mindformers_yaml
from mindie_pack.errors import PackError
from mindie_pack.weights.hf_source import HFWeights
from mindie_pack.weights.lora import LoraMergedWeights, peft_deltas
from mindie_pack.weights.mf_source import is_mindspore_input, open_mindformers
from mindie_pack.weights.training_state import FilterReport


@dataclass(frozen=True)
class InputOptions:
    model: Path
    hf_config: Path | None = None
    strategy: Path | None = None
    lora: Path | None = None
    keep: tuple[str, ...] = ()
    train_yaml: Path | None = None


@dataclass
class OpenedInput:
    model: HFModel
    weights: Any  # HFWeights, ComputedWeights or LoraMergedWeights: the tensor-source surface
    kind: str  # "hf" | "mindspore"
    files: list[Path]
    extras: list[str] = field(default_factory=list)
    report: FilterReport | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {"kind": self.kind, "files": [str(f) for f in self.files]}
        if self.report is not None:
            data.update(self.report.as_dict())
        return data


def _config_model(hf_config: Path) -> HFModel:
    if is_mindformers_yaml(hf_config):
        return load_hf_model(hf_folder_from_mindformers_yaml(hf_config))
    return load_hf_model(hf_config)


def input_model(options: InputOptions) -> HFModel:
    """The HF config (and tokenizer folder) of the input: an HF folder, or a MindFormers yaml read back."""
    if is_mindspore_input(options.model):
        if options.hf_config is None and (options.model / "config.json").is_file():
            return load_hf_model(options.model)  # a model zoo folder: config, tokenizer and the .ckpt together
        if options.hf_config is None:
            raise PackError(f"{options.model}: a MindSpore checkpoint carries no config; pass --hf-config DIR (the "
                            "Hugging Face config.json and tokenizer it belongs to)")
        return _config_model(options.hf_config)
    if options.strategy is not None:
        raise PackError(f"--strategy {options.strategy}: only for MindSpore rank folders, and {options.model} is a "
                        "Hugging Face folder")
    if options.hf_config is not None:
        return _config_model(options.hf_config)
    return load_hf_model(options.model)


def open_input(options: InputOptions, model: HFModel) -> OpenedInput:
    if is_mindspore_input(options.model):
        opened = open_mindformers(
            options.model, model.family, model.dims, model.config_path, strategy=options.strategy,
            keep=options.keep, train_yaml=options.train_yaml,
        )
        result = OpenedInput(model, opened.weights, "mindspore", list(opened.weights.files), opened.extras,
                             opened.report, opened.notes)
    else:
        weights = HFWeights(options.model)
        result = OpenedInput(model, weights, "hf", list(weights.files))
    if options.lora is not None:
        shapes = {entry.name: entry.shape for entry in result.weights.iter_entries()}
        deltas = peft_deltas(options.lora, shapes)
        result.weights = LoraMergedWeights(result.weights, deltas)
        result.files += [options.lora / "adapter_config.json", options.lora / "adapter_model.safetensors"]
        result.notes.append(f"merged the PEFT LoRA adapter {options.lora} into {len(deltas)} weights")
    return result
