"""CPU reference runtime: run a built model directory with MindSpore on CPU (see api.py for the contract).

`load_runtime` and `CpuRuntime` are imported on first use: they import MindSpore, which every CLI start
would otherwise pay for (~1.3 s).
"""

from typing import Any

from mindie_pack.runtime.api import FinishReason, GenerationParams, GenerationResult, Runtime, TokenCallback

__all__ = ["CpuRuntime", "FinishReason", "GenerationParams", "GenerationResult", "Runtime", "TokenCallback",
           "load_runtime"]


def __getattr__(name: str) -> Any:
    if name in ("load_runtime", "CpuRuntime"):
        from mindie_pack.runtime import engine

        return getattr(engine, name)
    raise AttributeError(name)
