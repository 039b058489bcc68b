"""`stop` never signals a process it did not start: hostile and stale state files, run inside a PID namespace
(unshare --pid --fork --mount-proc) so that a regression can only hit the namespace's own decoy processes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PROBE = Path(__file__).with_name("stop_namespace_probe.py")


def _namespace_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    return done.returncode == 0


@pytest.fixture(scope="module")
def report() -> dict[str, dict[str, object]]:
    if not _namespace_available():
        if os.environ.get("CI"):
            pytest.fail("unshare --pid --fork --mount-proc is needed (run the tests as root)")
        pytest.skip("cannot create a PID namespace here (needs root)")
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, str(PROBE)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("scenario, words", [
    ("pgid_1", "process group 1 would signal every process"),
    ("pgid_0", "process group 0 is not a process group"),
    ("own_group", "is mindie-pack's own"),
])
def test_unsafe_process_groups_are_refused(report: dict[str, dict[str, object]], scenario: str, words: str) -> None:
    outcome = report[scenario]
    assert outcome["decoys_alive"] == [True, True]
    assert outcome["code"] == 2
    stderr = str(outcome["stderr"])
    assert words in stderr and "refusing to signal anything" in stderr
    assert "Traceback" not in stderr and len(stderr.strip().splitlines()) == 1


@pytest.mark.parametrize("scenario, finding", [
    ("stale_pid", "the daemon (pid 4000000) is no longer running"),
    ("recycled_pid", "is now another process (sleep 600"),
    ("same_start_wrong_token", "does not carry this deployment's token: not signalled"),
    ("no_identity", "records no identity"),
])
def test_processes_that_are_not_ours_are_not_signalled(report: dict[str, dict[str, object]], scenario: str,
                                                       finding: str) -> None:
    outcome = report[scenario]
    assert outcome["decoys_alive"] == [True, True]
    assert outcome["code"] == 0, outcome["stderr"]
    result = json.loads(str(outcome["stdout"]))
    assert result["signalled"] == [] and result["killed"] == []
    assert any(finding in f for f in result["findings"]), result["findings"]


def test_our_daemon_and_its_children_all_get_the_grace_period(report: dict[str, dict[str, object]]) -> None:
    outcome = report["ours"]
    assert outcome["code"] == 0, outcome["stderr"]
    result = json.loads(str(outcome["stdout"]))
    assert outcome["decoys_alive"] == [True, True]
    assert outcome["members_alive"] == [False] * len(outcome["members"])  # type: ignore[arg-type]
    # leader and child trap SIGTERM and need 1 s: both finished inside the grace period, none needed SIGKILL
    assert result["killed"] == []
    assert outcome["daemon_returncode"] == 0
    assert set(outcome["members"][:2]) <= set(result["signalled"])  # type: ignore[index]
