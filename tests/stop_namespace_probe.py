"""Run inside a fresh PID namespace (`unshare --pid --fork --mount-proc`): decoy processes, hostile state files,
`mindie-pack stop` on each; prints one JSON report. A regression can only hurt processes of this namespace.

Used by tests/test_deploy_stop_safety.py; not a test module itself.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

TOKEN_ENV = "MINDIE_PACK_DEPLOYMENT"  # the variable name is part of the contract under test


def spawn_decoy(new_session: bool) -> subprocess.Popen[bytes]:
    return subprocess.Popen(["sleep", "600"], start_new_session=new_session)


def state(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "pid": None, "pgid": None, "mode": "host", "config_path": "/nonexistent/config.json",
        "model_dir": "/nonexistent",
        "model_name": "decoy", "log_path": "/nonexistent/daemon.log", "started_at": time.time(),
        "business_url": "http://127.0.0.1:9", "management_url": "http://127.0.0.1:9", "metrics_url": "http://127.0.0.1:9",
        "mindie_home": "/nonexistent", "deployment_dir": "/nonexistent"}
    base.update(fields)
    return base


def run_stop(state_dir: Path, data: dict[str, object], process_group: int | None = None) -> dict[str, object]:
    state_dir.mkdir(parents=True, exist_ok=True)
    (state_dir / "deployment.json").write_text(json.dumps(data))
    env = dict(os.environ, MINDIE_PACK_STATE_DIR=str(state_dir))
    done = subprocess.run([sys.executable, "-m", "mindie_pack", "stop", "--json", "--timeout", "3"], env=env,
                          capture_output=True, text=True, timeout=120,
                          process_group=process_group)
    return {"code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


def alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def main() -> None:
    root = Path(tempfile.mkdtemp(prefix="stop-ns-"))
    decoy_group = spawn_decoy(new_session=True)       # its own group, as our daemon would be
    decoy_same = subprocess.Popen(["sleep", "600"], process_group=0)  # leads the group `stop` will run in
    decoys = [decoy_group, decoy_same]
    time.sleep(0.2)
    group_info = psutil.Process(decoy_group.pid)
    results: dict[str, object] = {"own_pgid": os.getpgrp(), "pid": os.getpid()}
    scenarios = {
        "pgid_1": state(pid=decoy_group.pid, pgid=1, create_time=group_info.create_time(), token="x" * 32),
        "pgid_0": state(pid=decoy_group.pid, pgid=0, create_time=group_info.create_time(), token="x" * 32),
        "stale_pid": state(pid=4_000_000, pgid=decoy_group.pid, create_time=time.time() - 5, token="y" * 32),
        "recycled_pid": state(pid=decoy_group.pid, pgid=decoy_group.pid, create_time=group_info.create_time() - 100,
                              token="z" * 32),
        "same_start_wrong_token": state(pid=decoy_group.pid, pgid=decoy_group.pid,
                                        create_time=group_info.create_time(), token="w" * 32),
        "no_identity": state(pid=decoy_group.pid, pgid=decoy_group.pid),
    }
    for name, data in scenarios.items():
        outcome = run_stop(root / name, data)
        outcome["decoys_alive"] = [alive(d) for d in decoys]
        results[name] = outcome
    # `stop` running inside the recorded process group: it must not signal its own group
    outcome = run_stop(root / "own_group", state(pid=decoy_same.pid, pgid=decoy_same.pid,
                                                 create_time=psutil.Process(decoy_same.pid).create_time(),
                                                 token="x" * 32), process_group=decoy_same.pid)
    outcome["decoys_alive"] = [alive(d) for d in decoys]
    results["own_group"] = outcome

    # positive control: a "daemon" we started (token in its environment, own session) with a child that needs
    # 1 s to shut down after SIGTERM: the whole group gets the grace period, so nothing needs SIGKILL.
    token = "a" * 32
    script = ("trap 'sleep 1; exit 0' TERM; sh -c \"trap 'sleep 1; exit 0' TERM; while :; do sleep 0.1; done\" & "
              "while :; do sleep 0.1; done")
    daemon = subprocess.Popen(["sh", "-c", script], start_new_session=True, env=dict(os.environ, **{TOKEN_ENV: token}))
    time.sleep(0.5)
    info = psutil.Process(daemon.pid)
    members = [p.pid for p in psutil.process_iter() if _pgid(p.pid) == daemon.pid]
    outcome = run_stop(root / "ours", state(pid=daemon.pid, pgid=daemon.pid, create_time=info.create_time(),
                                             token=token))
    daemon.wait(timeout=30)
    outcome["members"] = members
    outcome["members_alive"] = [psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                for p in members]
    outcome["daemon_returncode"] = daemon.returncode
    outcome["decoys_alive"] = [alive(d) for d in decoys]
    results["ours"] = outcome
    for decoy in decoys:
        decoy.send_signal(signal.SIGKILL)
        decoy.wait()
    print(json.dumps(results))


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


if __name__ == "__main__":
    main()
