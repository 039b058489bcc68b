"""CPU reference runtime: run a built model directory with MindSpore on CPU (see api.py for the contract)."""

from mindie_pack.runtime.api import FinishReason, GenerationParams, GenerationResult, Runtime, TokenCallback
from mindie_pack.runtime.engine import CpuRuntime, load_runtime

__all__ = ["CpuRuntime", "FinishReason", "GenerationParams", "GenerationResult", "Runtime", "TokenCallback",
           "load_runtime"]
