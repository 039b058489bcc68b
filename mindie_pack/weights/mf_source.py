"""MindSpore `.ckpt` input in MindFormers names: a single complete checkpoint (model zoo, or `rank_0/`), or a
MindFormers training output (`checkpoint/rank_{i}/*.ckpt` + `strategy/ckpt_strategy_rank_{i}.ckpt`).

Presented as a tensor source in HF naming (see tensor_source.py), so the builder and the exporter treat it like
an HF folder. Reading is lazy and per tensor: rank files are indexed by their record headers only
(ckpt_format.scan_records), and `read(name)` reads that tensor's slices from each rank file, merges them with
MindSpore's layout code (strategy.py), adds a MindPet LoRA update when there is one, and maps the name back to HF
through the family's tensor plan (models/, the same table the build uses forwards).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from mindie_pack.errors import PackError
from mindie_pack.models import ModelDims, ModelFamily, TensorSpec, hf_tensor_parts
from mindie_pack.weights.ckpt_format import CkptFormatError, CkptRecord, read_record, scan_records
from mindie_pack.weights.dtypes import DType, RawTensor, cast
from mindie_pack.weights.lora import LoraDelta, PetConfig, pet_config_from_yaml, split_mindpet_name
from mindie_pack.weights.strategy import Strategy, expected_full_shape, load_strategy, merge_slices, needed_ranks
from mindie_pack.weights.tensor_source import ComputedWeights, virtual_entry
from mindie_pack.weights.training_state import FilterReport, is_training_state, matches_any

_RANK_DIR = re.compile(r"rank_(\d+)")


@dataclass
class MFLayout:
    """Where the pieces of a MindFormers checkpoint are."""

    origin: Path
    rank_files: list[Path]  # index = rank
    strategy: Path | None
    yaml_files: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _natural_key(path: Path) -> list[object]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", path.name)]


def is_mindspore_input(path: Path) -> bool:
    """A .ckpt file, or a folder without HF weights that holds rank_*/ folders or a .ckpt (directly or under
    checkpoint/)."""
    if path.is_file():
        return path.suffix == ".ckpt"
    if not path.is_dir():
        return False
    if any(path.glob("*.safetensors")) or any(path.glob("pytorch_model*.bin")):
        return False
    root = path / "checkpoint" if (path / "checkpoint").is_dir() else path
    return any(_RANK_DIR.fullmatch(p.name) for p in root.iterdir() if p.is_dir()) or any(root.glob("*.ckpt"))


def discover(path: Path, strategy: Path | None = None) -> MFLayout:
    if path.is_file():
        if path.suffix != ".ckpt":
            raise PackError(f"{path}: expected a MindSpore .ckpt file")
        return MFLayout(path, [path], strategy)
    if not path.is_dir():
        raise PackError(f"{path}: not found")
    root = path / "checkpoint" if (path / "checkpoint").is_dir() else path
    ranks: dict[int, Path] = {}
    for child in root.iterdir():
        match = _RANK_DIR.fullmatch(child.name)
        if match and child.is_dir():
            ranks[int(match.group(1))] = child
    yamls = sorted(p for p in path.glob("*.y*ml") if p.is_file())
    if not ranks:
        files = sorted((p for p in root.glob("*.ckpt") if p.is_file()), key=_natural_key)
        if len(files) != 1:
            raise PackError(f"{root}: expected rank_0/ … rank_N/ folders or a single .ckpt, found "
                            f"{len(files)} .ckpt files and no rank folders")
        return MFLayout(path, files, strategy, yamls)
    count = max(ranks) + 1
    missing = [r for r in range(count) if r not in ranks]
    if missing:
        raise PackError(f"{root / f'rank_{missing[0]}'}: missing (found rank folders "
                        f"{', '.join(str(r) for r in sorted(ranks))}; a training output has rank_0..rank_{count - 1})")
    rank_files: list[Path] = []
    notes: list[str] = []
    for rank in range(count):
        files = sorted((p for p in ranks[rank].glob("*.ckpt") if p.is_file()), key=_natural_key)
        if not files:
            raise PackError(f"{ranks[rank]}: no .ckpt file in this rank folder")
        if len(files) > 1:
            notes.append(f"rank_{rank}: {len(files)} checkpoints, using the latest step {files[-1].name}")
        rank_files.append(files[-1])
    if strategy is None and count > 1:
        default = path / "strategy"
        if default.is_dir():
            strategy = default
        else:
            raise PackError(f"{path}: {count} rank folders but no strategy files (expected {default}/"
                            "ckpt_strategy_rank_{i}.ckpt, or name them with --strategy)")
    return MFLayout(path, rank_files, strategy, yamls, notes[:3] + ([f"… {len(notes) - 3} more"] if len(notes) > 3
                                                                     else []))


class RankedCheckpoint:
    """MindFormers-named tensors of one or several rank files; `read` merges one tensor at a time."""

    def __init__(self, layout: MFLayout, strategy: Strategy | None) -> None:
        self.layout = layout
        self.strategy = strategy
        self.indexes: list[dict[str, CkptRecord]] = []
        for file in layout.rank_files:
            try:
                self.indexes.append({record.name: record for record in scan_records(file)})
            except (CkptFormatError, UnicodeDecodeError) as exc:
                raise PackError(f"{file}: not a readable MindSpore checkpoint ({exc})") from None
        self.names = list(dict.fromkeys(name for index in self.indexes for name in index))
        if strategy is not None and strategy.device_num != len(layout.rank_files):
            raise PackError(
                f"{strategy.files[0]}: the strategy describes {strategy.device_num} ranks "
                f"({strategy.stage_num} pipeline stage(s) x {strategy.stage_device_num} devices) but "
                f"{layout.origin} has {len(layout.rank_files)} rank folder(s)"
                + (f"; {layout.origin}/…/rank_{len(layout.rank_files)} is missing"
                   if strategy.device_num > len(layout.rank_files) else "")
            )
        if strategy is None and len(layout.rank_files) > 1:
            raise PackError(f"{layout.origin}: {len(layout.rank_files)} ranks need strategy files (--strategy)")

    def _holders(self, name: str) -> list[int]:
        """Ranks whose slice makes up the tensor: those of its (first) pipeline stage, or all for unsplit ones."""
        layout = self.strategy.layouts.get(name) if self.strategy else None
        if layout is None or self.strategy is None:
            return [r for r, index in enumerate(self.indexes) if name in index]
        return list(self.strategy.stage_ranks(layout.stages[0]))

    def first_record(self, name: str) -> tuple[Path, CkptRecord]:
        for rank in self._holders(name):
            record = self.indexes[rank].get(name)
            if record is not None:
                return self.layout.rank_files[rank], record
        raise KeyError(name)

    def shape(self, name: str) -> tuple[int, ...]:
        file, record = self.first_record(name)
        layout = self.strategy.layouts.get(name) if self.strategy else None
        return expected_full_shape(layout, record.dims) if layout is not None else record.dims

    def dtype(self, name: str) -> DType:
        file, record = self.first_record(name)
        try:
            return record.dtype
        except KeyError:
            raise PackError(f"{file}: tensor {name!r} has unsupported type {record.type_str!r}") from None

    def disk_bytes(self, name: str) -> int:
        return sum(length for index in self.indexes if name in index for _, length in index[name].pieces)

    def check(self, name: str) -> None:
        """Every holder rank has a slice of the shape the strategy implies (headers only)."""
        layout = self.strategy.layouts.get(name) if self.strategy else None
        full = self.shape(name)
        for rank in self._holders(name):
            file = self.layout.rank_files[rank]
            record = self.indexes[rank].get(name)
            if record is None:
                raise PackError(f"{file}: tensor {name!r} is missing from this rank (the strategy "
                                f"{self.strategy.files[0].name if self.strategy else ''} places a slice of it here)")
            want = layout.slice_shape(full) if layout is not None else full
            if record.dims != want:
                where = f"the strategy {self.strategy.files[0]} ({layout.describe()})" if layout else "rank 0"
                raise PackError(f"{file}: tensor {name!r} has shape {list(record.dims)}, but {where} implies "
                                f"{list(want)} on this rank: the strategy does not match the rank files")

    def read(self, name: str) -> RawTensor:
        dtype = self.dtype(name)
        layout = self.strategy.layouts.get(name) if self.strategy else None
        holders = self._holders(name)
        if layout is None:
            file, record = self.first_record(name)
            tensor = read_record(file, record)
            digest = _digest(tensor)
            for rank in holders[1:]:  # not in the strategy: every copy must be the same
                other = read_record(self.layout.rank_files[rank], self.indexes[rank][name])
                if _digest(other) != digest:
                    raise PackError(f"{self.layout.rank_files[rank]}: tensor {name!r} is not in the strategy and "
                                    f"differs from {file}'s copy (cannot tell how it was split)")
            return tensor
        assert self.strategy is not None
        self.check(name)
        base = holders[0]
        slices = {local: read_record(self.layout.rank_files[base + local], self.indexes[base + local][name]).array
                  for local in needed_ranks(name, layout)}
        try:
            merged = merge_slices(name, layout, slices)
        except Exception as exc:  # MindSpore's redistribution raises ValueError/IndexError on inconsistent input
            raise PackError(f"{self.strategy.files[0]}: cannot merge tensor {name!r} from "
                            f"{self.layout.rank_files[base].parent.parent} ({layout.describe()}): {exc}") from None
        return RawTensor(dtype, np.ascontiguousarray(merged.view(dtype.info.storage)))


def _digest(tensor: RawTensor) -> bytes:
    array = np.ascontiguousarray(tensor.array)
    return hashlib.sha256(memoryview(array.reshape(-1).view(np.uint8)) if array.size else b"").digest()


@dataclass
class MindFormersInput:
    weights: ComputedWeights  # HF names (plus --keep extras under their own names)
    report: FilterReport
    extras: list[str]  # names kept by --keep that are not model tensors
    lora_modules: list[str]
    notes: list[str]


def open_mindformers(
    path: Path,
    family: ModelFamily,
    dims: ModelDims,
    config_origin: Path,
    *,
    strategy: Path | None = None,
    keep: tuple[str, ...] = (),
    train_yaml: Path | None = None,
) -> MindFormersInput:
    layout = discover(path, strategy)
    parsed = load_strategy(layout.strategy) if layout.strategy is not None else None
    ckpt = RankedCheckpoint(layout, parsed)
    plan = family.plan_tp(dims, 1, None)
    specs = family.tensor_specs(dims, plan, DType.FLOAT32)  # names and shapes only; dtypes come from the file
    by_target = {spec.target: spec for spec in specs}

    report = FilterReport()
    lora: dict[str, dict[str, str]] = {}
    extras: list[str] = []
    for name in ckpt.names:
        if name in by_target:
            continue
        if matches_any(name, keep):
            report.kept[name] = ckpt.disk_bytes(name)
            extras.append(name)
            continue
        if is_training_state(name):  # before the LoRA check: adam_m.<module>.mindpet_delta_lora_a is state
            report.dropped_state[name] = ckpt.disk_bytes(name)
            continue
        pet = split_mindpet_name(name)
        if pet is not None:
            lora.setdefault(pet[0], {})[pet[1]] = name
            continue
        report.dropped_other[name] = ckpt.disk_bytes(name)

    first_file = layout.rank_files[0]
    for spec in specs:
        if spec.target not in ckpt.names:
            raise PackError(f"{first_file}: tensor {spec.target!r} is missing (a {family.description} with "
                            f"{config_origin}'s num_hidden_layers={dims.num_layers} has it): is this the checkpoint "
                            "that config belongs to?")
        ckpt.check(spec.target)
        shape = ckpt.shape(spec.target)
        layout_of = parsed.layouts.get(spec.target) if parsed is not None else None
        if shape != spec.shape and layout_of is not None:
            file, record = ckpt.first_record(spec.target)
            raise PackError(f"{file}: tensor {spec.target!r} is a slice of shape {list(record.dims)}; with the "
                            f"strategy {layout.strategy} ({layout_of.describe()}) that makes {list(shape)}, but "
                            f"{config_origin} says {list(spec.shape)}: the strategy does not match the rank files")
        if shape != spec.shape:
            raise PackError(f"{first_file}: tensor {spec.target!r} has shape {list(shape)}, expected "
                            f"{list(spec.shape)} from {config_origin} (hidden_size={dims.hidden_size}, "
                            f"num_attention_heads={dims.num_heads}, num_key_value_heads={dims.num_kv_heads}, "
                            f"intermediate_size={dims.intermediate_size}, vocab_size={dims.vocab_size})")

    deltas = _mindpet_deltas(lora, ckpt, by_target, layout, train_yaml)
    weights = ComputedWeights(path if path.is_dir() else path.parent, list(layout.rank_files))

    def mf_reader(target: str) -> RawTensor:
        tensor = ckpt.read(target)
        delta = deltas.get(target)
        return delta.merge(tensor) if delta is not None else tensor

    for parts in hf_tensor_parts(specs):
        dtype = ckpt.dtype(parts.parts[0].target)

        def read_hf(parts: tuple[TensorSpec, ...] = parts.parts, dtype: DType = dtype) -> RawTensor:
            pieces = [cast(mf_reader(spec.target), dtype) for spec in parts]
            if len(pieces) == 1:
                return pieces[0]
            return RawTensor(dtype, np.concatenate([p.array for p in pieces], axis=0))

        weights.add(virtual_entry(parts.source, dtype, parts.shape, first_file), read_hf)
    for name in extras:
        weights.add(virtual_entry(name, ckpt.dtype(name), ckpt.shape(name), first_file),
                    lambda name=name: ckpt.read(name))
    notes = list(layout.notes)
    if parsed is not None:
        notes.append(f"merged {len(layout.rank_files)} ranks ({parsed.stage_num} pipeline stage(s) x "
                     f"{parsed.stage_device_num}) with the strategy in {layout.strategy}")
    notes.append(report.summary())
    if deltas:
        notes.append(f"merged MindPet LoRA into {len(deltas)} weights")
    return MindFormersInput(weights, report, extras, sorted(deltas), notes)


def _mindpet_deltas(
    lora: dict[str, dict[str, str]],
    ckpt: RankedCheckpoint,
    by_target: dict[str, TensorSpec],
    layout: MFLayout,
    train_yaml: Path | None,
) -> dict[str, LoraDelta]:
    if not lora:
        return {}
    first = layout.rank_files[0]
    example = next(iter(lora.values()))
    yaml_files = [train_yaml] if train_yaml is not None else layout.yaml_files
    pet: PetConfig | None = None
    for candidate in yaml_files:
        pet = pet_config_from_yaml(candidate)
        if pet is not None:
            break
    if pet is None:
        raise PackError(f"{first}: has LoRA tensors ({next(iter(example.values()))!r}, …) but no pet_config was "
                        "found: pass the training yaml with --train-yaml (model.model_config.pet_config gives "
                        "lora_rank, lora_alpha and target_modules)")
    deltas: dict[str, LoraDelta] = {}
    for module, factors in sorted(lora.items()):
        if set(factors) != {"a", "b"}:
            raise PackError(f"{first}: tensor {next(iter(factors.values()))!r} has no LoRA partner")
        weight = f"{module}.weight"
        if weight not in by_target:
            raise PackError(f"{first}: LoRA tensor {factors['a']!r} targets {weight!r}, which is not a weight of the "
                            "model")
        if not pet.targets(module):
            raise PackError(f"{first}: LoRA tensor {factors['a']!r} is on module {module!r}, which the pet_config "
                            f"target_modules {pet.target_modules!r} of {pet.origin} does not select")
        delta = LoraDelta(weight, lambda n=factors["a"]: ckpt.read(n), lambda n=factors["b"]: ckpt.read(n),
                          ckpt.shape(factors["a"]), ckpt.shape(factors["b"]), pet.scale,
                          f"{first}: tensor {factors['a']!r}")
        if delta.a_shape and delta.a_shape[0] != pet.rank:
            raise PackError(f"{first}: LoRA tensor {factors['a']!r} has rank {delta.a_shape[0]}, but "
                            f"{pet.origin} says pet_config.lora_rank = {pet.rank}")
        delta.check(by_target[weight].shape, pet.rank)
        deltas[weight] = delta
    return deltas
