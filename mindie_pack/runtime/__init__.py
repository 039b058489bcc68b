"""CPU reference runtime: run a built model directory (ms backend) or a Hugging Face folder (atb/torch) on CPU,
tensor-parallel ranks computed with their own shards (see api.py for the contract).

`open_model`, `load_runtime` and `CpuRuntime` are imported on first use: they import numpy and the weight
readers, which every CLI start would otherwise pay for.
"""

from typing import Any

from mindie_pack.runtime.api import FinishReason, GenerationParams, GenerationResult, Runtime, TokenCallback

__all__ = ["CpuRuntime", "FinishReason", "GenerationParams", "GenerationResult", "Runtime", "TokenCallback",
           "load_runtime", "open_model"]


def __getattr__(name: str) -> Any:
    if name in ("load_runtime", "open_model", "CpuRuntime"):
        from mindie_pack.runtime import engine

        return getattr(engine, name)
    raise AttributeError(name)
