"""What in a MindSpore/MindFormers training checkpoint is training state rather than model.

Names as MindSpore and MindFormers write them: optimizer moments are clones of each parameter under a prefix
(`nn.AdamWeightDecay`/MindFormers AdamW: `adam_m.`/`adam_v.`; FusedAdamW/CAME: `exp_avg.`/`exp_avg_sq.`;
`nn.Adam`/Momentum: `moment1.`/`moment2.`/`moments.`), gradient accumulation buffers `accu_grads.`, and the
scalars of the training loop (`global_step`, `learning_rate`, loss scaling, MindFormers' resume counters).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field

STATE_PREFIXES = (
    "adam_m.", "adam_v.", "exp_avg.", "exp_avg_sq.", "max_exp_avg_sq.", "moment1.", "moment2.", "moments.",
    "accu_grads.", "accumulated_grads.", "_accu_grads.", "grad_accum.", "vhat.",
)
STATE_NAMES = (
    "global_step", "learning_rate", "lr", "beta1_power", "beta2_power", "scale_sense", "loss_scale", "epoch_num",
    "step_num", "current_iterator_step", "last_overflow_iterator_step", "global_batch_size", "consumed_samples",
)


def is_training_state(name: str) -> bool:
    if name.startswith(STATE_PREFIXES) or name in STATE_NAMES:
        return True
    return re.fullmatch(r"(.*\.)?global_step", name) is not None


@dataclass
class FilterReport:
    """What was left out of the model (name -> bytes), and why; and what --keep brought back."""

    dropped_state: dict[str, int] = field(default_factory=dict)
    dropped_other: dict[str, int] = field(default_factory=dict)
    kept: dict[str, int] = field(default_factory=dict)

    @property
    def dropped_bytes(self) -> int:
        return sum(self.dropped_state.values()) + sum(self.dropped_other.values())

    def as_dict(self) -> dict[str, object]:
        return {
            "dropped_training_state": self.dropped_state,
            "dropped_not_in_model": self.dropped_other,
            "kept_by_pattern": self.kept,
            "dropped_bytes": self.dropped_bytes,
        }

    def summary(self) -> str:
        parts = [f"dropped {len(self.dropped_state)} training-state tensors "
                 f"({sum(self.dropped_state.values()):,} bytes)"]
        if self.dropped_other:
            parts.append(f"{len(self.dropped_other)} tensors not part of the model "
                         f"({sum(self.dropped_other.values()):,} bytes): {', '.join(sorted(self.dropped_other)[:5])}"
                         + ("…" if len(self.dropped_other) > 5 else ""))
        if self.kept:
            parts.append(f"kept by --keep: {', '.join(sorted(self.kept))}")
        return "; ".join(parts)


def matches_any(name: str, patterns: tuple[str, ...]) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns)
