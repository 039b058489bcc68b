"""LoRA weights merged into base weights before sharding: W' = W + scale * B @ A.

Two sources:
- MindFormers/MindPet training checkpoints: `<module>.mindpet_delta_lora_a` [r, in] and
  `<module>.mindpet_delta_lora_b` [out, r] next to `<module>.weight` (names as MindPet's LoRADense makes them;
  plain `<module>.lora_a`/`.lora_b` too), scale = lora_alpha / lora_rank and the target modules from the
  training yaml's `model.model_config.pet_config` (MindPet `LoRADense.scaling`; MindFormers `LoraAdapter`
  matches `target_modules` with `re.match` on the cell name).
- Hugging Face PEFT adapters: `adapter_config.json` + `adapter_model.safetensors` with
  `base_model.model.<module>.lora_A.weight` / `lora_B.weight`; scale = lora_alpha / r (lora_alpha / sqrt(r)
  with use_rslora), per-module rank_pattern/alpha_pattern honoured.
The product is computed in float32 and the sum rounded once to the base weight's dtype.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mindie_pack.errors import PackError
from mindie_pack.weights.dtypes import DType, RawTensor, cast, to_float32
from mindie_pack.weights.hf_source import HFWeights, TensorEntry

MINDPET_SUFFIXES = {
    "a": (".mindpet_delta_lora_a", ".lora_a", ".lora_a.weight"),
    "b": (".mindpet_delta_lora_b", ".lora_b", ".lora_b.weight"),
}


@dataclass(frozen=True)
class LoraDelta:
    """The low-rank update of one weight."""

    weight: str  # name of the base weight it applies to
    a: Callable[[], RawTensor]
    b: Callable[[], RawTensor]
    a_shape: tuple[int, ...]
    b_shape: tuple[int, ...]
    scale: float
    origin: str  # file (and tensor) the factors come from, for messages
    transpose: bool = False  # PEFT fan_in_fan_out

    def check(self, weight_shape: tuple[int, ...], rank: int | None) -> None:
        if len(self.a_shape) != 2 or len(self.b_shape) != 2 or self.a_shape[0] != self.b_shape[1]:
            raise PackError(f"{self.origin}: LoRA factors of {self.weight!r} have shapes A {list(self.a_shape)} and "
                            f"B {list(self.b_shape)}; expected A [r, in] and B [out, r]")
        if rank is not None and self.a_shape[0] != rank:
            raise PackError(f"{self.origin}: LoRA A of {self.weight!r} has rank {self.a_shape[0]}, but the adapter "
                            f"config says r = {rank}")
        out_in = (self.b_shape[0], self.a_shape[1])
        want = tuple(weight_shape[::-1]) if self.transpose else tuple(weight_shape)
        if out_in != want:
            raise PackError(f"{self.origin}: LoRA of {self.weight!r} is B {list(self.b_shape)} @ A "
                            f"{list(self.a_shape)} = {list(out_in)}, but the base weight is {list(weight_shape)}")

    def merge(self, base: RawTensor) -> RawTensor:
        delta = to_float32(self.b()).astype(np.float32) @ to_float32(self.a()).astype(np.float32)
        if self.transpose:
            delta = delta.T
        merged = to_float32(base).astype(np.float32) + np.float32(self.scale) * delta
        return cast(RawTensor(DType.FLOAT32, np.ascontiguousarray(merged, dtype=np.float32)), base.dtype)


class LoraMergedWeights:
    """A tensor source whose targeted weights come out with their LoRA update added."""

    def __init__(self, base: Any, deltas: dict[str, LoraDelta]) -> None:
        self.base = base
        self.deltas = deltas
        self.model_dir: Path = base.model_dir
        self.files: list[Path] = list(base.files)
        self.entries: dict[str, TensorEntry] = base.entries

    def __contains__(self, name: str) -> bool:
        return name in self.base

    def read(self, name: str) -> RawTensor:
        tensor = self.base.read(name)
        delta = self.deltas.get(name)
        return delta.merge(tensor) if delta is not None else tensor

    def iter_entries(self) -> Iterator[TensorEntry]:
        return self.base.iter_entries()


# -- MindPet / MindFormers --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PetConfig:
    rank: int
    alpha: float
    target_modules: str | None
    origin: str

    @property
    def scale(self) -> float:
        return self.alpha / self.rank

    def targets(self, module: str) -> bool:
        if not self.target_modules:
            return True
        last = module.rsplit(".", 1)[-1]
        return bool(re.match(self.target_modules, last) or re.match(self.target_modules, module))


def pet_config_from_yaml(path: Path) -> PetConfig | None:
    """`model.model_config.pet_config` of a MindFormers training yaml (None when it has none)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PackError(f"{path}: cannot read the MindFormers yaml ({exc})") from None
    model_config = ((data or {}).get("model") or {}).get("model_config") or {}
    pet = model_config.get("pet_config")
    if not pet:
        return None
    if str(pet.get("pet_type", "lora")).lower() != "lora":
        raise PackError(f"{path}: model.model_config.pet_config.pet_type is {pet.get('pet_type')!r}; only lora "
                        "adapters can be merged")
    try:
        return PetConfig(int(pet.get("lora_rank", 8)), float(pet.get("lora_alpha", 16)), pet.get("target_modules"),
                         str(path))
    except (TypeError, ValueError):
        raise PackError(f"{path}: pet_config lora_rank/lora_alpha must be numbers") from None


def split_mindpet_name(name: str) -> tuple[str, str] | None:
    """`x.wq.mindpet_delta_lora_a` -> ("x.wq", "a")."""
    for which, suffixes in MINDPET_SUFFIXES.items():
        for suffix in suffixes:
            if name.endswith(suffix):
                return name[: -len(suffix)], which
    return None


# -- Hugging Face PEFT ------------------------------------------------------------------------------------


def peft_deltas(adapter_dir: Path, base_shapes: dict[str, tuple[int, ...]]) -> dict[str, LoraDelta]:
    """Read a PEFT LoRA adapter folder and check it against the base model's HF tensor shapes."""
    config_path = adapter_dir / "adapter_config.json"
    if not config_path.is_file():
        raise PackError(f"{config_path}: missing (--lora expects a PEFT adapter folder with adapter_config.json "
                        "and adapter_model.safetensors)")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise PackError(f"{config_path}: not valid JSON ({exc})") from None
    if str(config.get("peft_type", "LORA")).upper() != "LORA":
        raise PackError(f"{config_path}: peft_type is {config.get('peft_type')!r}; only LORA adapters can be merged")
    for key, bad in (("use_dora", True), ("modules_to_save", None)):
        if config.get(key) and (bad is None or config.get(key) is bad):
            raise PackError(f"{config_path}: {key} is set ({config[key]!r}); merging it is not supported")
    if config.get("bias", "none") != "none":
        raise PackError(f"{config_path}: bias is {config.get('bias')!r}; only bias 'none' adapters can be merged")
    rank, alpha = int(config.get("r", 8)), float(config.get("lora_alpha", 8))
    rank_pattern, alpha_pattern = config.get("rank_pattern") or {}, config.get("alpha_pattern") or {}
    weights_path = adapter_dir / "adapter_model.safetensors"
    if not weights_path.is_file():
        raise PackError(f"{weights_path}: missing (adapter_model.bin is not read; save the adapter with "
                        "safe_serialization=True)")
    adapter = HFWeights(adapter_dir)  # reads every *.safetensors of the folder: adapter_model.safetensors
    pairs: dict[str, dict[str, TensorEntry]] = {}
    for entry in adapter.iter_entries():
        match = re.fullmatch(r"(?:base_model\.model\.)?(.+)\.lora_([AB])(?:\.[^.]+)?\.weight", entry.name)
        if match is None:
            raise PackError(f"{weights_path}: tensor {entry.name!r} is not a LoRA A/B matrix (only plain LoRA "
                            "adapters can be merged)")
        pairs.setdefault(match.group(1), {})[match.group(2)] = entry
    deltas: dict[str, LoraDelta] = {}
    targets = config.get("target_modules")
    for module, factors in sorted(pairs.items()):
        if set(factors) != {"A", "B"}:
            raise PackError(f"{weights_path}: module {module!r} has lora_{''.join(factors)} without its partner")
        weight = f"{module}.weight"
        if weight not in base_shapes:
            raise PackError(f"{weights_path}: tensor {factors['A'].name!r} targets {weight!r}, which the base model "
                            f"does not have (adapter target_modules {targets!r})")
        module_rank = _pattern_value(rank_pattern, module, rank)
        module_alpha = float(_pattern_value(alpha_pattern, module, alpha))
        scale = module_alpha / math.sqrt(module_rank) if config.get("use_rslora") else module_alpha / module_rank
        a_entry, b_entry = factors["A"], factors["B"]
        delta = LoraDelta(
            weight, lambda e=a_entry: adapter.read(e.name), lambda e=b_entry: adapter.read(e.name),
            a_entry.shape, b_entry.shape, scale, f"{weights_path}: tensor {a_entry.name!r}",
            transpose=bool(config.get("fan_in_fan_out")),
        )
        delta.check(base_shapes[weight], int(module_rank))
        deltas[weight] = delta
    if not deltas:
        raise PackError(f"{weights_path}: no LoRA matrices found")
    return deltas


def _pattern_value(patterns: dict[str, Any], module: str, default: Any) -> Any:
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?{pattern}$", module):
            return value
    return default
