"""`build --profile atb` / `--profile torch`: the Hugging Face folder prepared for MindIE's atb/torch backends.

No conversion to MindSpore: the model directory is the HF folder as MindIE's atb runner and server read it
(MindIE-LLM 8b4871ad docs/zh/user_guide/quick_start/quick_start.md:39-46 serves a plain HF download):
- safetensors kept as they are: hard-linked when mode (0640) and owner already fit, copied otherwise; converted,
  streaming, only for `--dtype` (builder/hf_layout.py);
- config.json with `torch_dtype` float16 or bfloat16: atb raises NotImplementedError for anything else
  (examples/atb_models/atb_llm/runner/model_runner.py:302-309) and the server reads `torch_dtype` and
  `vocab_size` from it (service_parameter_configuration.md:125). transformers >= 5 writes `dtype` instead, so we
  always write `torch_dtype` (and keep `dtype` equal when present);
- tokenizer files and generation_config.json;
- modes: folders 0750, files 0640, owned by the builder's user (SafePath: PERM_750 on the weight dir,
  model_deploy_config.cpp:467; FILE_MODE_750 on config.json, param_checker.cpp:135-150; owner == process uid
  unless root, safe_path.cpp:281-335).
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mindie_pack.builder.atb_models import (
    SHIPPED_LISTS,
    atb_name,
    check_model_type,
    installed_model_types,
    shipped_release,
    visible_atb_llm,
)
from mindie_pack.builder.hf_layout import place_weights
from mindie_pack.builder.hf_model import HFModel, load_hf_model, read_json
from mindie_pack.builder.manifest import BackgroundHashes, build_manifest, read_manifest, write_manifest
from mindie_pack.builder.staging import StagedDirectory
from mindie_pack.builder.tokenizer import TOKENIZER_FILES
from mindie_pack.errors import PackError
from mindie_pack.weights.dtypes import DType
from mindie_pack.weights.hf_source import SAFETENSORS_INDEX, HFWeights

if TYPE_CHECKING:
    from mindie_pack.builder.assemble import BuildProgress, BuildResult
    from mindie_pack.builder.options import BuildOptions
    from mindie_pack.builder.verify import VerifyReport

HF_PROFILES = ("atb", "torch")
ATB_DTYPES = ("float16", "bfloat16")  # model_runner.py:302-309
EXTRA_TEXT_FILES = ("chat_template.jinja", "generation_config.json")
NO_CPU_PROOF = "no CPU proof"


@dataclass(frozen=True)
class HFBuildPlan:
    options: BuildOptions
    path: Path
    config: dict[str, Any]
    model: HFModel | None  # None: a model_type atb serves but our CPU runtime does not (e.g. MoE)
    model_type: str
    release: str
    source_dtype: str | None
    target_dtype: str
    model_name: str
    notes: list[str] = field(default_factory=list)


def _major(version: str | None) -> int | None:
    head = (version or "").split(".")[0]
    return int(head) if head.isdigit() else None


def plan_hf_build(options: BuildOptions) -> HFBuildPlan:
    """Everything that can be refused is refused here, before anything is written."""
    profile = options.profile
    release = shipped_release(options.mindie_version)
    major = _major(options.mindie_version)
    if profile == "torch" and major is not None and major < 3:
        raise PackError(f"--profile torch needs MindIE 3.0 or later (--mindie-version {options.mindie_version}): the "
                        "torch backend is new in 3.0; use --profile atb for MindIE 2.x")
    if options.tp < 1:
        raise PackError(f"--tp must be at least 1, got {options.tp}")
    path = options.model_dir
    if not path.is_dir():
        raise PackError(f"{path}: not a directory (expected a Hugging Face model folder)")
    from mindie_pack.builder.tokenizer import check_tokenizer_files

    check_tokenizer_files(path)
    config_path = path / "config.json"
    config = read_json(config_path)
    model_type = config.get("model_type")
    if not isinstance(model_type, str) or not model_type:
        raise PackError(f"{config_path}: model_type missing (atb picks the model by it, "
                        "atb_llm/models/__init__.py:54-57); add the model_type of the architecture")
    commit, supported = SHIPPED_LISTS[release]
    notes: list[str] = []
    installed_dir = visible_atb_llm()
    if installed_dir is not None and not check_model_type(model_type, installed_model_types(installed_dir)):
        raise PackError(f"{config_path}: model_type {model_type!r}: the installed atb_llm ({installed_dir}) has no "
                        f"models/{atb_name(model_type)} folder (unsupported model type); serve a supported model or "
                        "upgrade MindIE")
    try:
        model: HFModel | None = load_hf_model(path)
    except PackError:
        model = None
    if not check_model_type(model_type, supported):
        if model is None:
            raise PackError(f"{config_path}: model_type {model_type!r} is not in MindIE {release}'s atb model list "
                            f"(atb_llm/models/{atb_name(model_type)} missing @{commit}); use a supported model "
                            f"({', '.join(s for s in supported if s in ('llama', 'qwen2', 'qwen3', 'baichuan'))}, …)")
        notes.append(f"model_type {model_type!r} is not in the {release} support list (atb_llm/models @{commit}): "
                     "the installed MindIE decides at deploy time")
    if model is not None:
        model.family.plan_tp(model.dims, options.tp, None)  # the head counts must split over worldSize
    if model is None:
        notes.append(f"model_type {model_type!r}: served by atb, but mindie-pack's CPU runtime cannot run it "
                     f"({NO_CPU_PROOF}: `verify --run` is not available)")
    source_dtype = config.get("torch_dtype") or config.get("dtype")
    source_dtype = str(source_dtype) if source_dtype is not None else None
    if options.dtype is not None:
        if options.dtype not in ATB_DTYPES:
            raise PackError(f"--dtype {options.dtype!r}: the {profile} backend loads float16 or bfloat16 only "
                            "(atb_llm/runner/model_runner.py:302-309); pass --dtype float16 or --dtype bfloat16")
        target = options.dtype
    elif source_dtype in ATB_DTYPES:
        target = source_dtype
    else:
        raise PackError(f"{config_path}: torch_dtype {source_dtype!r}: the {profile} backend loads float16 or "
                        "bfloat16 only (atb_llm/runner/model_runner.py:302-309); pass --dtype bfloat16 "
                        "(or --dtype float16 for 310P / Atlas 300I Duo)")
    weights = HFWeights(path)
    if weights.files[0].suffix != ".safetensors":
        raise PackError(f"{weights.files[0]}: profile {profile} keeps safetensors as they are; this folder has "
                        "PyTorch .bin weights (save them as safetensors, or use --profile mf-ckpt)")
    if options.mindformers_src is not None:
        raise PackError(f"--mindformers-src: not used by profile {profile} (atb reads the HF folder)")
    return HFBuildPlan(options, path, config, model, model_type, release, source_dtype, target,
                       options.name or options.output_dir.name, notes)


def build_hf_model_dir(options: BuildOptions, progress: BuildProgress) -> BuildResult:
    from mindie_pack.builder.assemble import BuildResult

    plan = plan_hf_build(options)
    weights = HFWeights(plan.path)
    target = DType.from_name(plan.target_dtype)
    converting = [e for e in weights.entries.values() if e.dtype.is_float and e.dtype is not target]
    final_dir = options.output_dir.absolute()
    index = plan.path / SAFETENSORS_INDEX
    inputs = sorted({plan.path / "config.json", *weights.files, *_text_files(plan.path),
                     *([index] if index.is_file() else [])})
    streamed = set(weights.files) if converting else set()  # hashed by the conversion as it reads them
    # the other inputs are hashed alongside; a failed or interrupted build cancels that (BackgroundHashes)
    with StagedDirectory(final_dir, force=options.force) as staging, \
            BackgroundHashes([p for p in inputs if p not in streamed]) as input_hashes:
        assert staging.path is not None
        root = staging.path
        progress.stage("writing config and tokenizer")
        config = dict(plan.config)
        config["torch_dtype"] = plan.target_dtype
        if "dtype" in config:
            config["dtype"] = plan.target_dtype
        (root / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        for source in _text_files(plan.path):
            shutil.copyfile(source, root / source.name)
        progress.start(sum(f.stat().st_size for f in weights.files))
        progress.stage(f"converting weights to {plan.target_dtype}" if converting else "linking safetensors")
        # streaming, one block at a time; a value that would overflow is refused naming the tensor (or --clamp)
        read_hashes = place_weights(weights, target, root, clamp=options.clamp, progress=progress.advance)
        linked = [f.name for f in weights.files if os.path.samefile(root / f.name, f)]
        progress.stage("hashing inputs and outputs")
        known = {**input_hashes.result(), **read_hashes}
        if not converting:  # linked or copied byte for byte: the output's sha256 is the input's (one read, not two)
            known.update({root / f.name: known[f] for f in [*weights.files, *([index] if index.is_file() else [])]})
        dims = plan.model.dims if plan.model else None
        manifest = build_manifest(
            root=root, inputs=inputs, known_hashes=known,
            options={**options.as_manifest(), "output_dir": str(final_dir), "dtype": plan.target_dtype,
                     "name": plan.model_name, "mindie_version": options.mindie_version or plan.release},
            model={
                "family": plan.model.family.name if plan.model else plan.model_type,
                "architecture": (plan.config.get("architectures") or [None])[0],
                "model_type": plan.model_type,
                "atb_model": atb_name(plan.model_type),
                "yaml": None,
                "cpu_runtime": plan.model is not None,
                "num_layers": dims.num_layers if dims else plan.config.get("num_hidden_layers"),
                "hidden_size": dims.hidden_size if dims else plan.config.get("hidden_size"),
                "num_heads": dims.num_heads if dims else plan.config.get("num_attention_heads"),
                "num_kv_heads": dims.num_kv_heads if dims else plan.config.get("num_key_value_heads"),
                "vocab_size": dims.vocab_size if dims else plan.config.get("vocab_size"),
            },
            tensors={"count": len(weights.entries), "format": "safetensors", "converted": bool(converting),
                     "hard_linked": linked},
        )
        write_manifest(root, manifest)
        staging.commit()
    notes = list(plan.notes)
    if converting:
        notes.append(f"{len(converting)} tensor(s) converted to {plan.target_dtype}")
    return BuildResult(output_dir=final_dir, manifest=manifest, notes=notes)


def _text_files(hf_dir: Path) -> list[Path]:
    """Tokenizer, generation config, and the folder's own Python files (tokenization_*.py / modeling_*.py: what
    trustRemoteCode loads for models such as Baichuan2)."""
    named = [hf_dir / name for name in (*TOKENIZER_FILES, *EXTRA_TEXT_FILES) if (hf_dir / name).is_file()]
    return named + sorted(p for p in hf_dir.glob("*.py") if p.is_file())


def _write_index(source: Path, destination: Path, total_size: int) -> None:
    index = read_json(source)
    index.setdefault("metadata", {})["total_size"] = total_size
    destination.write_text(json.dumps(index, indent=2) + "\n")


# -- reading a built atb/torch directory back (verify, the CPU runtime) ---------------------------------------------

def is_hf_layout(model_dir: Path) -> bool:
    """A directory `build --profile atb|torch` wrote (its manifest says so)."""
    manifest = model_dir / "manifest.json"
    if not manifest.is_file():
        return False
    try:
        profile = json.loads(manifest.read_text()).get("options", {}).get("profile")
    except (OSError, json.JSONDecodeError):
        return False
    return profile in HF_PROFILES


def verify_hf_dir(model_dir: Path, reference: Path | None, report: VerifyReport) -> VerifyReport:
    """Manifest, the atb rules on config.json and modes, tensors readable and of the declared dtype, and (with a
    reference) every tensor equal to the reference after the cast to that dtype."""
    from mindie_pack.builder.verify import check_manifest

    check_manifest(model_dir, report)
    manifest = read_manifest(model_dir)
    config = read_json(model_dir / "config.json")
    dtype_name = config.get("torch_dtype")
    if dtype_name not in ATB_DTYPES:
        report.add("config", False, f"config.json torch_dtype {dtype_name!r}: atb loads float16 or bfloat16 only "
                   "(model_runner.py:302-309)")
        return report
    mode_problem = _mode_problem(model_dir)
    report.add("config", mode_problem is None, mode_problem or f"torch_dtype {dtype_name}, model_type "
               f"{config.get('model_type')!r}, folders <= 0750 and files <= 0640")
    try:
        ours = HFWeights(model_dir)
    except PackError as exc:
        report.add("weights", False, str(exc))
        return report
    want = DType.from_name(dtype_name)
    wrong = [e.name for e in ours.entries.values() if e.dtype.is_float and e.dtype is not want]
    report.add("weights", not wrong, f"tensor {wrong[0]!r} is not {dtype_name} (config.json torch_dtype)" if wrong
               else f"{len(ours.entries)} tensors in {len(ours.files)} safetensors file(s), all {dtype_name}")
    if reference is not None and not wrong:
        # the independent oracle: the reference read by the safetensors library and cast by torch, streaming
        from mindie_pack.builder.verify import check_safetensors_reference

        check_safetensors_reference(model_dir, reference, report,
                                    clamp=bool(manifest.get("options", {}).get("clamp", False)))
    if not manifest.get("model", {}).get("cpu_runtime", True):
        report.add("cpu-proof", True, f"{NO_CPU_PROOF}: model_type {config.get('model_type')!r} is built and "
                   "deployable, but mindie-pack's CPU runtime does not run it")
    return report


def _mode_problem(model_dir: Path) -> str | None:
    for folder, _dirs, files in os.walk(model_dir):
        if os.stat(folder).st_mode & 0o027:
            return f"{folder}: mode {os.stat(folder).st_mode & 0o777:o} is wider than 750 (chmod 750 {folder})"
        for name in files:
            path = os.path.join(folder, name)
            if os.stat(path).st_mode & 0o137:
                return f"{path}: mode {os.stat(path).st_mode & 0o777:o} is wider than 640 (chmod 640 {path})"
    return None
