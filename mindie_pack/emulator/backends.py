"""The emulator's engine-init rules per MindIE release and backend: what the real Python engine refuses after the
C++ config checks passed, with the real messages (MindIE-LLM 8b4871ad = 3.0.0, 40fb0630 = 2.3.0).

- 3.0 serves atb and torch only: mindie_llm/text_generator/adapter/__init__.py:33-37 (ms was removed by 2072a951);
- atb/torch: torch_dtype float16/bfloat16 (atb_llm/runner/model_runner.py:302-309), bf16 needs a chip with bf16
  (:356-361), model_type routed to an atb_llm/models folder (atb_llm/models/__init__.py:84-98).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mindie_pack.builder.atb_models import atb_name, installed_model_types
from mindie_pack.env.atb_checks import chip_lacks_bf16

MS_UNSUPPORTED_30 = 'Unsupported backend type. The `backend_type` field only supports either "atb" or "torch".'
DTYPE_MESSAGE = ("`torch_dtype` is only supported for type `float16` and `bfloat16`, loaded from config.json -> "
                 "torch_dtype.")
BF16_MESSAGE = ("This device does not support bfloat16.Please change the data type(i.e. `torch_dtype`) to float16 in "
                "config.json from model weights.")


def _major(version: str | None) -> int:
    head = (version or "").split(".")[0]
    return int(head) if head.isdigit() else 0


def atb_llm_dir(home: Path) -> Path | None:
    """The emulated install's atb_llm: next to mindie_llm (3.0 venv) or in the 2.x atb-models tree."""
    for candidate in (home.parent / "atb_llm", home.parent.parent.parent / "atb-models" / "atb_llm"):
        if (candidate / "models").is_dir():
            return candidate
    return None


def chips(home: Path) -> list[str]:
    """Chip names of the emulated NPUs (the stand-in npu-smi's state file)."""
    for root in (home.parent.parent.parent, *home.parents):
        state = root / ".standin" / "npu-state.json"
        if state.is_file():
            return [str(c.get("name", "")) for c in json.loads(state.read_text()).get("chips", [])]
    return []


def engine_refusal(model: dict[str, Any], settings: dict[str, Any], home: Path) -> str | None:
    """The line the real engine logs before it fails, or None when it would load."""
    version = settings.get("mindie_version")
    backend = model.get("backendType")
    if _major(version) >= 3 and backend not in ("atb", "torch"):
        return f"{MS_UNSUPPORTED_30} ({backend} not implemented)"
    if backend not in ("atb", "torch"):
        return None
    weights = Path(str(model.get("modelWeightPath")))
    try:
        config = json.loads((weights / "config.json").read_text())
    except (OSError, ValueError):
        return None  # the config checks already reported it
    if config.get("torch_dtype") not in ("float16", "bfloat16"):
        return f"NotImplementedError: {DTYPE_MESSAGE}"
    if config.get("torch_dtype") == "bfloat16" and any(chip_lacks_bf16(c) for c in chips(home)):
        return f"NotImplementedError: {BF16_MESSAGE}"
    folder = atb_llm_dir(home)
    if folder is not None:
        name = atb_name(str(config.get("model_type", "")))
        if name not in installed_model_types(folder):
            return (f"NotImplementedError: unsupported model type: {name}；"
                    f"请确认atb_llm.models路径下是否存在名为{name}的文件夹。")
    return None
