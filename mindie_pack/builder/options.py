"""Resolved options of one `mindie-pack build`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Profile = Literal["mf-ckpt", "mf-safetensors", "llm-boost", "atb", "torch"]
# atb / torch: the HF folder prepared for MindIE's atb/torch backends (builder/hf_profile.py).
PROFILES: tuple[str, ...] = ("mf-ckpt", "mf-safetensors", "llm-boost", "atb", "torch")


@dataclass(frozen=True)
class BuildOptions:
    model_dir: Path
    output_dir: Path
    tp: int = 1
    dtype: str | None = None  # None: the HF config's torch_dtype
    profile: str = "mf-ckpt"
    name: str | None = None
    force: bool = False
    mindformers_src: Path | None = None
    vocab_emb_dp: bool | None = None
    seq_length: int | None = None
    crc: bool = False
    mindie_version: str | None = None  # atb/torch: the release whose rules apply (default 3.0.0)
    # Inputs other than an HF folder (builder/inputs.py): MindSpore .ckpt / training output, PEFT LoRA.
    hf_config: Path | None = None
    strategy: Path | None = None
    lora: Path | None = None
    keep: tuple[str, ...] = ()
    train_yaml: Path | None = None
    clamp: bool = False  # saturate values a narrowing cast would turn into inf (default: refuse)

    def as_manifest(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}
