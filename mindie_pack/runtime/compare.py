"""`verify --run`: our runtime on the built directory against an independent reference on the HF weights."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mindie_pack.runtime.api import GenerationParams
from mindie_pack.runtime.engine import load_runtime
from mindie_pack.runtime.reference import load_reference

DEFAULT_PROMPT = "MindIE serves large language models on Ascend NPUs."


@dataclass
class RunComparison:
    prompt: str
    reference_kind: str
    max_abs_logit_diff: float
    ours_tokens: list[int]
    reference_tokens: list[int]
    ours_text: str
    reference_text: str

    @property
    def ok(self) -> bool:
        return self.ours_tokens == self.reference_tokens

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "ok": self.ok}


def compare_with_reference(model_dir: Path, hf_dir: Path, prompt: str = DEFAULT_PROMPT, tokens: int = 16,
                           reference: str = "auto") -> RunComparison:
    runtime = load_runtime(model_dir)
    ids = runtime.encode(prompt)
    ref = load_reference(hf_dir, reference)
    ours_logits = runtime.prompt_logits(ids)
    diff = float(np.max(np.abs(ours_logits - ref.logits(ids))))
    ours = runtime.generate([ids], GenerationParams(max_new_tokens=tokens, ignore_eos=True))[0].token_ids
    theirs = ref.greedy(ids, tokens)
    return RunComparison(prompt, ref.kind, diff, ours, theirs, runtime.decode(ours), runtime.decode(theirs))
