"""Resolved options of one `mindie-pack build`."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

Profile = Literal["mf-ckpt", "mf-safetensors", "llm-boost", "atb", "torch"]
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
    clamp: bool = False  # saturate values a narrowing cast would turn into inf (default: refuse)

    def as_manifest(self) -> dict[str, Any]:
        data = asdict(self)
        return {key: str(value) if isinstance(value, Path) else value for key, value in data.items()}
