"""Shared fixtures: tiny HF models (random weights in the exact HF layout) and an in-process CLI runner."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from mindie_pack.runtime.context import configure_cpu
from mindie_pack.tiny_model import TinyModelSpec, make_tiny_model

configure_cpu()  # before any test runs a MindSpore kernel (the settings cannot change afterwards)

# In CI (CI=true) a skipped test fails: a missing tool (MindFormers, chromium, sshd, …) must not let a key test
# pass silently. The one skip allowed there is the real Docker engine run: no Docker engine exists on our machines.
SKIPS_ALLOWED_IN_CI = ("no Docker engine on this machine",)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI") and report.skipped and not hasattr(report, "wasxfail") \
            and not any(reason in str(report.longrepr) for reason in SKIPS_ALLOWED_IN_CI):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, which must run every test: {report.longrepr}"

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Path]:
    """`tiny_models(family="llama", dtype="float32", shards=2, ...)` -> an HF folder, made once per spec per session.

    Callers must not modify the returned folder; copy it first (see `tiny_model_copy`).
    """
    cache: dict[str, Path] = {}
    root = tmp_path_factory.mktemp("hf")

    def make(**fields: object) -> Path:
        spec = TinyModelSpec(**fields)  # type: ignore[arg-type]
        key = repr(spec)  # the spec holds a dict (rope_scaling), so it is not hashable
        if key not in cache:
            cache[key] = make_tiny_model(root / f"model{len(cache)}", spec)
        return cache[key]

    return make


@pytest.fixture
def tiny_model_copy(tiny_models: Callable[..., Path], tmp_path: Path) -> Callable[..., Path]:
    """A private, modifiable copy of a cached tiny model."""

    def copy(**fields: object) -> Path:
        target = tmp_path / "hf-copy"
        shutil.copytree(tiny_models(**fields), target)
        return target

    return copy


@dataclass
class CliResult:
    exit_code: int
    stdout: str
    stderr: str


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Callable[..., CliResult]:
    """Run `mindie-pack ARGS` in-process through the real entry point (error printing and exit codes included)."""
    from mindie_pack.cli import main

    def run(*args: str | Path) -> CliResult:
        capsys.readouterr()
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out = capsys.readouterr()
        return CliResult(code, out.out, out.err)

    return run
