"""Model families. Adding a family = adding one module and listing it in FAMILIES."""

from __future__ import annotations

from typing import Any

from mindie_pack.errors import PackError
from mindie_pack.models.baichuan2 import Baichuan2Family
from mindie_pack.models.base import (
    HFTensorParts,
    ModelDims,
    ModelFamily,
    TensorSpec,
    TokenizerChoice,
    TpPlan,
    hf_tensor_parts,
    mf_to_hf_names,
)
from mindie_pack.models.llama import LlamaFamily
from mindie_pack.models.qwen2 import Qwen2Family
from mindie_pack.models.qwen3 import Qwen3Family

FAMILIES: tuple[ModelFamily, ...] = (LlamaFamily(), Qwen2Family(), Qwen3Family(), Baichuan2Family())


def detect_family(config: dict[str, Any], origin: str = "config.json") -> ModelFamily:
    for family in FAMILIES:
        if family.matches(config):
            return family
    supported = "; ".join(f.description for f in FAMILIES)
    found = config.get("architectures") or config.get("model_type")
    raise PackError(f"{origin}: unsupported model {found!r}; supported families: {supported}")


def family_by_name(name: str) -> ModelFamily:
    for family in FAMILIES:
        if family.name == name:
            return family
    raise PackError(f"unknown model family {name!r}; expected one of {', '.join(f.name for f in FAMILIES)}")


__all__ = [
    "FAMILIES", "HFTensorParts", "ModelDims", "ModelFamily", "TensorSpec", "TokenizerChoice", "TpPlan",
    "hf_tensor_parts", "mf_to_hf_names",
    "detect_family", "family_by_name",
]
