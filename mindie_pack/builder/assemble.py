"""`mindie-pack build`: assemble the model directory MindIE's ms backend loads (modelWeightPath)."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mindie_pack.builder.convert import check_sources, convert_to_ranks, source_bytes
from mindie_pack.builder.hf_model import HFModel, read_json, resolve_dtype
from mindie_pack.builder.hf_profile import HF_PROFILES, build_hf_model_dir
from mindie_pack.builder.inputs import InputOptions, input_model, open_input
from mindie_pack.builder.manifest import BackgroundHashes, HashRecord, build_manifest, write_manifest
from mindie_pack.builder.options import PROFILES, BuildOptions
from mindie_pack.builder.staging import StagedDirectory, link_or_copy, terminate_as_interrupt
from mindie_pack.builder.tokenizer import TokenizerPlan, plan_tokenizer, research_file
from mindie_pack.builder.yaml_render import YamlInputs, render_yaml, resolve_seq_length
from mindie_pack.errors import PackError
from mindie_pack.hashing import INPUT_HASH, OUTPUT_HASH
from mindie_pack.heap import frozen_heap
from mindie_pack.models import TensorSpec, TpPlan
from mindie_pack.weights.dtypes import DType
from mindie_pack.weights.hf_source import SAFETENSORS_INDEX, HFWeights

WEIGHTS_DIR = "weights"
LLM_BOOST_FILES = ("llm_boost.py", "llm_boost_config.py")
MCORE_FAMILIES = ("qwen2",)


@dataclass
class BuildProgress:
    """Hooks for the CLI's progress bar; the build itself prints nothing."""

    start: Callable[[int], None] = lambda total: None
    advance: Callable[[int], None] = lambda nbytes: None
    stage: Callable[[str], None] = lambda text: None


@dataclass
class BuildResult:
    output_dir: Path
    manifest: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        return {
            "output_dir": str(self.output_dir),
            "yaml": self.manifest["model"]["yaml"],
            "family": self.manifest["model"]["family"],
            "profile": self.manifest["options"]["profile"],
            "tp": self.manifest["options"]["tp"],
            "dtype": self.manifest["options"]["dtype"],
            "files": len(self.manifest["outputs"]),
            "bytes": sum(o["size"] for o in self.manifest["outputs"]),
            "weights": [o for o in self.manifest["outputs"] if o["path"].startswith(WEIGHTS_DIR + "/")],
            "notes": self.notes,
        }


@dataclass(frozen=True)
class BuildPlan:
    options: BuildOptions
    model: HFModel
    dtype: DType
    tp_plan: TpPlan
    specs: list[TensorSpec]
    tokenizer: TokenizerPlan
    research_files: list[Path]
    seq_length: int
    model_name: str


def plan_build(options: BuildOptions) -> BuildPlan:
    """Everything that can be refused is refused here, before anything is written."""
    if options.profile not in PROFILES:
        raise PackError(f"--profile {options.profile!r}: expected one of {', '.join(PROFILES)}")
    model = input_model(_input_options(options))
    family = model.family
    if options.profile == "mf-safetensors" and family.name not in MCORE_FAMILIES:
        raise PackError(
            f"{model.config_path}: profile mf-safetensors (MindFormers mcore) supports Qwen2/Qwen2.5 only; "
            f"use --profile mf-ckpt for {family.description}"
        )
    dtype = resolve_dtype(options.dtype, model)
    tp_plan = family.plan_tp(model.dims, options.tp, options.vocab_emb_dp)
    specs = family.tensor_specs(model.dims, tp_plan, dtype)
    src = options.mindformers_src
    if src is not None and not src.is_dir():
        raise PackError(f"--mindformers-src {src}: not a directory")
    research_files: list[Path] = []
    needs_research = options.profile == "llm-boost" or family.research_model_module(model.dims) is not None
    if options.profile == "llm-boost":
        if src is None:
            raise PackError("profile llm-boost needs --mindformers-src DIR (a MindFormers r1.3 source checkout)")
        for name in LLM_BOOST_FILES:
            path = src / "research" / "llm_boost" / name
            if not path.is_file():
                raise PackError(f"{path}: missing from the MindFormers source checkout given by --mindformers-src")
            research_files.append(path)
    elif (module := family.research_model_module(model.dims)) is not None:
        if src is None:
            raise PackError(
                f"{family.description}: MindFormers has no built-in {family.arch_type(model.dims)}; pass "
                f"--mindformers-src DIR so {family.research_dir()}/{module}.py is copied into the model directory"
            )
        research_files.append(research_file(src, family, module))
    tokenizer = plan_tokenizer(family, model.path, src, require_research=needs_research)
    if tokenizer.research_file is not None:
        research_files.append(tokenizer.research_file)
    return BuildPlan(
        options=options, model=model, dtype=dtype, tp_plan=tp_plan, specs=specs, tokenizer=tokenizer,
        research_files=research_files, seq_length=resolve_seq_length(options.seq_length, model),
        model_name=options.name or options.output_dir.name,
    )


def check_output_path(model_dir: Path, output_dir: Path, *, force: bool) -> None:
    """Refuse an output that would destroy the source: the model folder itself, a folder containing it,
    or (with --force, which replaces what is there) a folder inside it."""
    model, output = model_dir.resolve(), output_dir.resolve()
    if output == model:
        raise PackError(f"--output {output_dir}: is the --model folder itself; the build would replace its source "
                        "(choose another output folder)")
    if output in model.parents:
        raise PackError(f"--output {output_dir}: contains the --model folder {model_dir}; the build would replace "
                        "its source (choose a folder outside it)")
    if model in output.parents and force and (output.exists() or output.is_symlink()):
        raise PackError(f"--output {output_dir}: is inside the --model folder {model_dir}; --force would replace "
                        "part of the source (choose a folder outside it)")


def build_model_dir(options: BuildOptions, progress: BuildProgress | None = None) -> BuildResult:
    """Plan, then write the model directory; SIGTERM is handled like Ctrl-C (nothing is left behind), and an
    OSError on the output side is one line naming the path."""
    with terminate_as_interrupt(), frozen_heap():
        try:
            return _build(options, progress or BuildProgress())
        except OSError as exc:
            where = exc.filename or options.output_dir
            raise PackError(f"{where}: {exc.strerror or exc} (while writing {options.output_dir})") from exc


def _build(options: BuildOptions, progress: BuildProgress) -> BuildResult:
    check_output_path(options.model_dir, options.output_dir, force=options.force)
    if options.profile in HF_PROFILES:  # atb / torch: no MindSpore conversion
        return build_hf_model_dir(options, progress)
    plan = plan_build(options)
    opened = open_input(_input_options(options), plan.model)
    if opened.extras:
        raise PackError(f"--keep: {', '.join(opened.extras[:3])}{' …' if len(opened.extras) > 3 else ''} would be "
                        "kept, but a MindIE model directory holds only the network's parameters (MindSpore's "
                        "strict load and verify refuse others); keep training state with `mindie-pack export`")
    weights = opened.weights
    check_sources(weights, plan.specs, plan.model.family, plan.model.dims)
    if plan.options.profile == "mf-safetensors" and not isinstance(weights, HFWeights):
        raise PackError(f"{options.model_dir}: profile mf-safetensors links HF safetensors as they are; build a "
                        "MindSpore checkpoint or a LoRA merge with --profile mf-ckpt (or `mindie-pack export` it to "
                        "an HF folder first)")
    if plan.options.profile == "mf-safetensors" and weights.files[0].suffix != ".safetensors":
        raise PackError(f"{weights.files[0]}: profile mf-safetensors needs safetensors weights; use --profile mf-ckpt")
    final_dir = options.output_dir.absolute()
    inputs = sorted({plan.model.config_path, *opened.files, *plan.tokenizer.files, *plan.research_files})
    converting = options.profile != "mf-safetensors"
    # The converter hashes the safetensors it reads; the rest is hashed alongside, and cancelled on failure.
    streamed = {f for f in weights.files if f.suffix == ".safetensors"} if converting else set()
    with StagedDirectory(final_dir, force=options.force) as staging, \
            BackgroundHashes([p for p in inputs if p not in streamed]) as input_hashes:
        assert staging.path is not None
        root = staging.path
        known_hashes: dict[Path, HashRecord] = {}
        progress.stage("copying config and tokenizer")
        _copy_metadata(plan, root)
        (root / WEIGHTS_DIR).mkdir(mode=0o750)
        yaml_name = f"predict_{_safe_name(plan.model_name)}.yaml"
        yaml_text = render_yaml(YamlInputs(
            model=plan.model, plan=plan.tp_plan, dtype=plan.dtype, profile=options.profile,
            model_name=plan.model_name, final_dir=final_dir, weights_dir=final_dir / WEIGHTS_DIR,
            tokenizer=plan.tokenizer, seq_length=plan.seq_length,
            generation_config=_generation_config(plan.model.path),
        ))
        (root / yaml_name).write_text(yaml_text)
        tensors: dict[str, Any]
        if options.profile == "mf-safetensors":
            progress.stage("linking safetensors")
            progress.start(sum(f.stat().st_size for f in weights.files))
            _link_safetensors(weights, root / WEIGHTS_DIR, progress)
            tensors = {"count": len(weights.entries), "format": "safetensors"}
        else:
            progress.stage("converting weights")
            progress.start(source_bytes(weights, plan.specs))
            converted = convert_to_ranks(
                weights, plan.specs, plan.tp_plan.tp, root / WEIGHTS_DIR, crc=options.crc, clamp=options.clamp,
                progress=progress.advance,
            )
            rank_files = converted.rank_files
            known_hashes.update({f.path: {OUTPUT_HASH: f.digest} for f in rank_files})
            known_hashes.update({path: {INPUT_HASH: digest} for path, digest in converted.input_hashes.items()})
            tensors = {
                "count": len(plan.specs),
                "format": "ckpt",
                "per_rank_bytes": [f.size for f in rank_files],
                "split": {spec.target: spec.split_axis for spec in plan.specs},
            }
        if opened.kind != "hf" or options.lora is not None:
            tensors["input"] = opened.summary()
        progress.stage("hashing inputs and outputs")
        known_hashes.update(input_hashes.result())
        manifest = build_manifest(
            root=root,
            inputs=inputs,
            known_hashes=known_hashes,
            options={
                **options.as_manifest(),
                "output_dir": str(final_dir),
                "dtype": plan.dtype.info.name,
                "vocab_emb_dp": plan.tp_plan.vocab_emb_dp,
                "seq_length": plan.seq_length,
                "name": plan.model_name,
            },
            model={
                "family": plan.model.family.name,
                "architecture": plan.model.family.arch_type(plan.model.dims),
                "yaml": yaml_name,
                "tokenizer": plan.tokenizer.choice.type,
                "num_layers": plan.model.dims.num_layers,
                "hidden_size": plan.model.dims.hidden_size,
                "num_heads": plan.model.dims.num_heads,
                "num_kv_heads": plan.model.dims.num_kv_heads,
                "vocab_size": plan.model.dims.vocab_size,
            },
            tensors=tensors,
        )
        write_manifest(root, manifest)
        staging.commit()
    return BuildResult(output_dir=final_dir, manifest=manifest,
                       notes=[*opened.notes, *staging.notes, *plan.tp_plan.notes])


def _input_options(options: BuildOptions) -> InputOptions:
    return InputOptions(options.model_dir, options.hf_config, options.strategy, options.lora, tuple(options.keep),
                        options.train_yaml)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in name) or "model"


def _generation_config(hf_dir: Path) -> dict[str, Any] | None:
    path = hf_dir / "generation_config.json"
    return read_json(path) if path.is_file() else None


def _copy_metadata(plan: BuildPlan, root: Path) -> None:
    shutil.copyfile(plan.model.config_path, root / "config.json")
    generation = plan.model.path / "generation_config.json"
    if generation.is_file():
        shutil.copyfile(generation, root / "generation_config.json")
    for path in [*plan.tokenizer.files, *plan.research_files]:
        shutil.copyfile(path, root / path.name)


def _link_safetensors(weights: HFWeights, target: Path, progress: BuildProgress) -> None:
    """Hard-link when that cannot change what MindIE checks of the source (staging.link_or_copy), else copy."""
    files = list(weights.files)
    index = weights.model_dir / SAFETENSORS_INDEX
    if index.is_file():
        files.append(index)
    for source in files:
        link_or_copy(source, target / source.name)
        progress.advance(source.stat().st_size if source.suffix == ".safetensors" else 0)


