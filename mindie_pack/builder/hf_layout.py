"""`build --profile atb|torch`: the Hugging Face folder prepared for MindIE's atb/torch backends.

Facts (MindIE-LLM v3.0.0, commit 8b4871ad; /work/shared/reference/mindie-3.0-and-atb.md):
- the atb runner accepts `torch_dtype` float16 or bfloat16 only (examples/atb_models/atb_llm/runner/
  model_runner.py:302-309), and the server reads `torch_dtype` from the model config.json
  (docs service_parameter_configuration.md:125); folders saved by transformers >= 5 carry `dtype` instead,
  so `torch_dtype` is written in every case;
- the weight folder is checked with PERM_750 and config.json with FILE_MODE_750, the owner must be the
  service user unless it runs as root (model_deploy_config.cpp:467,481; safe_path.cpp:281-335): folders 0750,
  files 0640, owned by us;
- the model is found by `model_type` among the folders of atb_llm/models (atb_llm/models/__init__.py:40-119).
Safetensors are kept as they are: hard-linked when their mode (0640) and owner already fit, else copied; with
`--dtype` different from the stored one they are rewritten, streaming, with the overflow check.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mindie_pack.builder.convert import STEP_BYTES, _Source
from mindie_pack.builder.staging import FILE_MODE
from mindie_pack.errors import PackError
from mindie_pack.weights.dtypes import FINITE_MAX, TORCH_DTYPE_NAMES, CastOverflow, DType, RawTensor, cast_checked
from mindie_pack.weights.fileio import DirectWriter
from mindie_pack.weights.hf_source import SAFETENSORS_INDEX, HFWeights

HF_PROFILES = ("atb", "torch")
ATB_DTYPES = (DType.FLOAT16, DType.BFLOAT16)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack", ".gguf")
# model_type values MindIE's atb backend has a folder for under examples/atb_models/atb_llm/models/
# (`git ls-tree -d 8b4871ad examples/atb_models/atb_llm/models/` = v3.0.0; 40fb0630 = 2.3.0), minus
# base/ and embedding/ (infrastructure); folder names are the model_type the router imports.
ATB_MODEL_TYPES: dict[str, frozenset[str]] = {
    "3.0.0": frozenset({
        "baichuan", "bloom", "chatglm", "deepseek", "deepseekv2", "ernie_moe", "glm41v", "glm4_moe", "glm4v",
        "gte_qwen", "hunyuan", "internlm2", "internlm3", "internlmxcomposer2", "internvl", "janus", "kimi_k2",
        "llama", "llava", "llava_next", "minicpm", "minicpm_qwen2_v2", "mistral", "mixtral", "mllama", "phi3",
        "qwen2", "qwen2_audio", "qwen2_moe", "qwen2_vl", "qwen3", "qwen3_moe", "qwen3_vl", "qwen3_vl_moe",
        "telechat", "vita", "yivl",
    }),
}
SUPPORT_RELEASE = "3.0.0"


@dataclass(frozen=True)
class HFPlan:
    config: dict[str, Any]
    source_dtype: DType | None
    dtype: DType
    notes: tuple[str, ...]


def plan_hf_layout(model_dir: Path, requested: str | None) -> HFPlan:
    from mindie_pack.builder.hf_model import read_json

    config_path = model_dir / "config.json"
    if not model_dir.is_dir():
        raise PackError(f"{model_dir}: not a directory (expected a Hugging Face model folder)")
    config = read_json(config_path)
    stored = config.get("torch_dtype") or config.get("dtype")
    source = TORCH_DTYPE_NAMES.get(str(stored)) if stored is not None else None
    if requested is not None:
        try:
            dtype = DType.from_name(requested)
        except KeyError:
            dtype = None  # type: ignore[assignment]
        if dtype not in ATB_DTYPES:
            raise PackError(f"--dtype {requested!r}: the atb/torch backends load float16 or bfloat16 only "
                            "(atb_llm model_runner.py:302-309)")
    elif source in ATB_DTYPES:
        dtype = source  # type: ignore[assignment]
    else:
        raise PackError(f"{config_path}: torch_dtype {stored!r}: the atb/torch backends load float16 or bfloat16 "
                        "only; pass --dtype float16 or --dtype bfloat16")
    notes = []
    model_type = config.get("model_type")
    if model_type not in ATB_MODEL_TYPES[SUPPORT_RELEASE]:
        notes.append(f"{config_path}: model_type {model_type!r} is not in the {SUPPORT_RELEASE} support list "
                     "(atb_llm/models); MindIE may refuse it")
    return HFPlan(config, source, dtype, tuple(notes))


def metadata_files(model_dir: Path) -> list[Path]:
    """Tokenizer, generation_config, remote code and the like: every top-level file but weights and config."""
    return sorted(p for p in model_dir.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix not in WEIGHT_SUFFIXES
                  and p.name not in ("config.json", SAFETENSORS_INDEX, "pytorch_model.bin.index.json"))


def write_config(plan: HFPlan, target: Path) -> None:
    config = dict(plan.config)
    config["torch_dtype"] = plan.dtype.info.name
    if "dtype" in config:
        config["dtype"] = plan.dtype.info.name
    target.write_text(json.dumps(config, indent=2) + "\n")


def _fits_in_place(path: Path) -> bool:
    info = path.stat()
    return (info.st_mode & 0o7777) == FILE_MODE and (os.getuid() == 0 or info.st_uid == os.getuid())


def place_weights(weights: HFWeights, plan: HFPlan, out: Path, *, clamp: bool,
                  progress: Callable[[int], None]) -> dict[Path, str]:
    """Link, copy or convert every weight file into `out`; returns the sha256 of the inputs read on the way."""
    if any(f.suffix != ".safetensors" for f in weights.files):
        raise PackError(f"{weights.files[0]}: profiles atb/torch need safetensors weights (MindIE's atb loader "
                        "reads safetensors); convert the .bin files first")
    convert = any(e.dtype.is_float and e.dtype is not plan.dtype for e in weights.entries.values())
    if not convert:
        for source in weights.files:
            target = out / source.name
            linked = False
            if _fits_in_place(source):
                try:
                    os.link(source, target)
                    linked = True
                except OSError:
                    linked = False
            if not linked:
                shutil.copyfile(source, target)
            progress(source.stat().st_size)
        index = weights.model_dir / SAFETENSORS_INDEX
        if index.is_file():
            shutil.copyfile(index, out / SAFETENSORS_INDEX)
        return {}
    return _convert_files(weights, plan.dtype, out, clamp=clamp, progress=progress)


def _convert_files(weights: HFWeights, dtype: DType, out: Path, *, clamp: bool,
                   progress: Callable[[int], None]) -> dict[Path, str]:
    source = _Source(weights)
    total = 0
    weight_map: dict[str, str] = {}
    try:
        for file in weights.files:
            entries = sorted((e for e in weights.entries.values() if e.file == file), key=lambda e: e.start)
            header: dict[str, Any] = {"__metadata__": {"format": "pt"}}
            offset = 0
            targets = []
            for entry in entries:
                target = dtype if entry.dtype.is_float else entry.dtype
                nbytes = math.prod(entry.shape) * target.info.itemsize
                header[entry.name] = {"dtype": target.info.safetensors, "shape": list(entry.shape),
                                      "data_offsets": [offset, offset + nbytes]}
                offset += nbytes
                targets.append(target)
                weight_map[entry.name] = file.name
            raw = json.dumps(header, separators=(",", ":")).encode()
            raw += b" " * (-len(raw) % 8)
            total += offset
            writer = DirectWriter(out / file.name, FILE_MODE)
            try:
                writer.write(len(raw).to_bytes(8, "little") + raw)
                for entry, target in zip(entries, targets, strict=True):
                    rows = entry.shape[0] if entry.shape else 1
                    row_bytes = entry.nbytes // max(1, rows)
                    step = max(1, (STEP_BYTES // 4) // max(1, row_bytes))
                    for row in range(0, rows, step):
                        block, job = source.rows(entry, row, min(row + step, rows))
                        if job is not None:
                            job()
                        try:
                            stored = cast_checked(RawTensor(entry.dtype, block), target, clamp=clamp).array
                        except CastOverflow as exc:
                            raise PackError(
                                f"{entry.file}: tensor {entry.name!r} has values up to {exc.largest:.6g}, beyond "
                                f"{target.info.name}'s largest {FINITE_MAX[target]:.6g}; pass --clamp to saturate "
                                "them, or keep the stored dtype") from None
                        writer.write(memoryview(np.ascontiguousarray(stored).reshape(-1).view(np.uint8)))
                        progress(block.nbytes)
            finally:
                writer.close(sync=True)
        if (weights.model_dir / SAFETENSORS_INDEX).is_file():
            (out / SAFETENSORS_INDEX).write_text(json.dumps(
                {"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2) + "\n")
        return source.input_hashes()
    finally:
        source.close()
