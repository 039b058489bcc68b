"""Read back a built model directory: its yaml, and the tensor plan it implies (same rules as build)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mindie_pack.builder.hf_model import HFModel, load_hf_model
from mindie_pack.errors import PackError
from mindie_pack.models import TensorSpec, TpPlan
from mindie_pack.weights.dtypes import DType


@dataclass(frozen=True)
class BuiltModelDir:
    path: Path
    yaml_path: Path
    yaml: dict[str, Any]
    model: HFModel
    profile: str
    tp: int
    dtype: DType
    plan: TpPlan
    specs: list[TensorSpec]

    @property
    def weights_dir(self) -> Path:
        return self.path / "weights"


def find_single_yaml(model_dir: Path) -> Path:
    yamls = sorted(p for p in model_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    if len(yamls) != 1:
        raise PackError(
            f"{model_dir}: expected exactly one .yaml (MindIE loads the first it lists), found {len(yamls)}"
            + (f": {', '.join(p.name for p in yamls)}" if yamls else "")
        )
    return yamls[0]


def open_model_dir(model_dir: Path) -> BuiltModelDir:
    if not model_dir.is_dir():
        raise PackError(f"{model_dir}: not a directory")
    yaml_path = find_single_yaml(model_dir)
    try:
        data = yaml.safe_load(yaml_path.read_text())
    except yaml.YAMLError as exc:
        raise PackError(f"{yaml_path}: not valid YAML ({exc})") from exc
    model = load_hf_model(model_dir)
    parallel = data.get("parallel_config") or {}
    try:
        tp = int(parallel.get("model_parallel", 1))
    except (TypeError, ValueError):
        raise PackError(f"{yaml_path}: parallel_config.model_parallel {parallel.get('model_parallel')!r} is not "
                        "a whole number") from None
    model_config = (data.get("model") or {}).get("model_config") or {}
    if data.get("use_legacy") is False:
        profile, dtype_name = "mf-safetensors", model_config.get("params_dtype")
    else:
        profile = "llm-boost" if model_config.get("type") == "LlmBoostConfig" else "mf-ckpt"
        dtype_name = model_config.get("param_init_type")
    try:
        dtype = DType.from_name(str(dtype_name))
    except KeyError:
        raise PackError(f"{yaml_path}: model.model_config param dtype {dtype_name!r} is not one of "
                        "bfloat16, float16, float32") from None
    for key, expected in (("num_layers", model.dims.num_layers), ("hidden_size", model.dims.hidden_size),
                          ("num_heads", model.dims.num_heads), ("vocab_size", model.dims.vocab_size)):
        if profile != "mf-safetensors" and model_config.get(key) != expected:
            raise PackError(f"{yaml_path}: model.model_config.{key} is {model_config.get(key)!r}, "
                            f"config.json says {expected}")
    load_checkpoint = data.get("load_checkpoint")
    if load_checkpoint and Path(str(load_checkpoint)).resolve() != (model_dir / "weights").resolve():
        # MindFormers follows the yaml's absolute path: a moved or copied directory would load other weights.
        raise PackError(f"{yaml_path}: load_checkpoint is {load_checkpoint}, not this directory's weights folder "
                        f"{model_dir / 'weights'} (directory moved or copied? rebuild it, or fix the yaml's paths)")
    try:
        plan = model.family.plan_tp(model.dims, tp, bool(parallel.get("vocab_emb_dp", True)))
    except PackError as exc:  # the yaml is what is wrong here, not the --tp of a build
        raise PackError(f"{yaml_path}: parallel_config.model_parallel {tp} does not fit the model ("
                        f"{str(exc).removeprefix('config.json: ')})") from None
    built_tp = _manifest_tp(model_dir)
    if built_tp is not None and built_tp != tp:
        raise PackError(f"{yaml_path}: parallel_config.model_parallel is {tp}, but the directory was built for tp "
                        f"{built_tp} (manifest.json); the yaml was edited: rebuild, or restore model_parallel: "
                        f"{built_tp}")
    specs = model.family.tensor_specs(model.dims, plan, dtype)
    return BuiltModelDir(model_dir, yaml_path, data, model, profile, tp, dtype, plan, specs)


def _manifest_tp(model_dir: Path) -> int | None:
    import json

    try:
        manifest = json.loads((model_dir / "manifest.json").read_text())
        return int(manifest["options"]["tp"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
