"""What the atb backend refuses at start, checked before we start it (one line each: field, reason, fix).

- `torch_dtype` float16/bfloat16 only: atb_llm/runner/model_runner.py:302-309 @8b4871ad;
- bfloat16 on a chip without bf16 (310P = Atlas 300I Duo / 300V): model_runner.py:356-361 (NPUSocInfo.support_bf16);
- `model_type` must route to an atb_llm/models folder: atb_llm/models/__init__.py:84-98;
- the model dir's modes and owner: SafePath PERM_750 (model_deploy_config.cpp:467), config.json FILE_MODE_750
  (param_checker.cpp:135-150), owner == uid unless root (safe_path.cpp:281-335);
- torch and torch_npu importable in the serving environment (mindie_llm/server/main.py:66-71; atb-models/set_env.sh).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mindie_pack.builder.atb_models import SHIPPED_LISTS, atb_name, check_model_type, shipped_release

ATB_DTYPES = ("float16", "bfloat16")
NO_BF16_CHIPS = ("310P",)  # Ascend 310P (Atlas 300I Duo / 300I Pro / 300V): no bfloat16


def chip_lacks_bf16(chip_name: str) -> bool:
    return any(tag in chip_name.upper() for tag in NO_BF16_CHIPS)


def model_config(model_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((model_dir / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def dtype_problem(model_dir: Path, chips: Sequence[str]) -> str | None:
    config = model_config(model_dir)
    dtype = config.get("torch_dtype")
    where = f"{model_dir / 'config.json'}: torch_dtype"
    if dtype not in ATB_DTYPES:
        return (f"{where} {dtype!r}: the atb backend loads float16 or bfloat16 only (model_runner.py:302-309); "
                "rebuild with `mindie-pack build --profile atb --dtype bfloat16` (float16 on 310P)")
    bf16_less = sorted({c for c in chips if chip_lacks_bf16(c)})
    if dtype == "bfloat16" and bf16_less:
        return (f"{where} bfloat16: Ascend {bf16_less[0]} has no bfloat16 (model_runner.py:356-361); rebuild with "
                "`mindie-pack build --profile atb --dtype float16` (the build checks the float16 range)")
    return None


def model_type_problem(model_dir: Path, installed: Sequence[str] | None,
                       version: str | None) -> tuple[str, bool] | None:
    """(message, is_error): an error against an installed atb_llm list, a warning against our shipped list."""
    model_type = model_config(model_dir).get("model_type")
    if installed:
        if not check_model_type(model_type, tuple(installed)):
            return (f"{model_dir / 'config.json'}: model_type {model_type!r}: the installed atb_llm has no models/"
                    f"{atb_name(str(model_type))} folder (unsupported model type); serve a supported model or "
                    "upgrade MindIE", True)
        return None
    release = shipped_release(version)
    commit, shipped = SHIPPED_LISTS[release]
    if not check_model_type(model_type, shipped):
        return (f"{model_dir / 'config.json'}: model_type {model_type!r} is not in the {release} support list "
                f"(atb_llm/models @{commit})", False)
    return None


def permission_problem(model_dir: Path, uid: int | None = None) -> str | None:
    """Folders <= 0750, files <= 0640, everything owned by the service user (skipped for root)."""
    uid = os.getuid() if uid is None else uid
    for folder, _dirs, files in os.walk(model_dir):
        for path, limit in [(folder, 0o750), *((os.path.join(folder, f), 0o640) for f in files)]:
            info = os.stat(path)
            if uid != 0 and info.st_uid != uid:
                return (f"{path}: owned by uid {info.st_uid}, the service runs as uid {uid} (MindIE checks the owner, "
                        f"safe_path.cpp:281-335): chown -R {uid} {model_dir}")
            if info.st_mode & 0o777 & ~limit:
                return (f"{path}: mode {info.st_mode & 0o777:o} is wider than {limit:o} (MindIE refuses it, "
                        f"safe_path.cpp:281-335): chmod {limit:o} {path}, or rebuild with `mindie-pack build`")
    return None


def installed_types_in(atb_llm_dir: Path | None) -> tuple[str, ...]:
    from mindie_pack.builder.atb_models import installed_model_types

    return installed_model_types(atb_llm_dir) if atb_llm_dir else ()
