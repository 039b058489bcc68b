"""MindSpore process settings (verify's loader, the test session), applied once, as early as MindSpore allows.

The CPU runtime itself computes with numpy and does not import MindSpore."""

from __future__ import annotations

from functools import cache


@cache
def configure_cpu() -> None:
    import mindspore

    # Both settings must come before the first kernel runs; a process that already ran kernels (verify in the
    # same process, a test session) keeps its settings, which only costs speed.
    try:
        mindspore.set_device("CPU")
    except RuntimeError:
        pass
    try:
        # Small ops dispatched asynchronously spend most of their time synchronising (x14 slower on 2 cores).
        mindspore.runtime.launch_blocking()
    except RuntimeError:
        pass
