"""The Hugging Face model folder: config.json, its family and dimensions, its dtype."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindie_pack.errors import PackError
from mindie_pack.models import ModelDims, ModelFamily, detect_family
from mindie_pack.weights.dtypes import DType, target_dtype


@dataclass(frozen=True)
class HFModel:
    path: Path
    config: dict[str, Any]
    family: ModelFamily
    dims: ModelDims

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise PackError(f"{path}: file not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PackError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise PackError(f"{path}: expected a JSON object")
    return data


def load_hf_model(path: Path) -> HFModel:
    if not path.is_dir():
        raise PackError(f"{path}: not a directory (expected a Hugging Face model folder)")
    config_path = path / "config.json"
    if not config_path.is_file():
        raise PackError(f"{config_path}: missing (expected the model's Hugging Face config.json)")
    config = read_json(config_path)
    family = detect_family(config, str(config_path))
    try:
        dims = family.dims(config)
    except PackError as exc:
        raise PackError(str(exc).replace("config.json:", f"{config_path}:", 1)) from None
    return HFModel(path=path, config=config, family=family, dims=dims)


def resolve_dtype(requested: str | None, model: HFModel) -> DType:
    return target_dtype(requested, model.dims.torch_dtype, str(model.config_path))
