"""Shared pieces of the deploy/emulator/smoke tests: free ports, an emulator install, a built tiny model."""

from __future__ import annotations

import socket
from pathlib import Path

from mindie_pack.env.environment import port_is_free


def free_port_block(count: int = 3) -> int:
    """A base port with `count` consecutive free ports (business, management, metrics)."""
    for _ in range(200):
        with socket.socket() as probe:
            probe.bind(("0.0.0.0", 0))
            base = probe.getsockname()[1]
        if base + count >= 65535:
            continue
        if all(port_is_free(base + i) for i in range(count)):
            return base
    raise RuntimeError("no free port block")


def build_tiny(root: Path, tp: int = 2) -> tuple[Path, Path]:
    from mindie_pack.builder.assemble import build_model_dir
    from mindie_pack.builder.options import BuildOptions
    from mindie_pack.tiny_model import TinyModelSpec, make_tiny_model

    hf_dir = make_tiny_model(root / "hf", TinyModelSpec(family="qwen2", dtype="float32"))
    out = root / "tiny-qwen2"
    build_model_dir(BuildOptions(model_dir=hf_dir, output_dir=out, tp=tp, name="tiny-qwen2"))
    return hf_dir, out


def kill_recorded_daemon() -> None:
    """Test teardown: never leave the recorded daemon behind, whatever the test did (never group <= 1 or ours)."""
    import os
    import signal

    from mindie_pack.deploy.state import load_state

    state = load_state(required=False)
    if state is not None and state.pgid and state.pgid > 1 and state.pgid != os.getpgrp():
        try:
            os.killpg(state.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
