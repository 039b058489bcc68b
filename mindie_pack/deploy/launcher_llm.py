"""The MindIE >= 3.0 launcher: `mindie_llm_server` (the pip package's console entry point) behind the Launcher
interface of deploy/launcher.py, so readiness, status, logs and stop are the same as for mindieservice_daemon.

What differs from the <= 2.3 daemon (MindIE-LLM 8b4871ad):
- the program: `<env>/bin/mindie_llm_server` (setup.py:129-131), which execs <pkg>/bin/mindieservice_daemon in the
  same process (mindie_llm/server/main.py:86-90), so the pid we record stays the daemon's;
- the config: <pkg>/conf/config.json (main.py:50), written by deploy's write_files after a backup; no
  MIES_CONFIG_JSON_PATH (it would win over that file: src/utils/common_util.cpp:265);
- the working directory must be writable (kernel_meta is written there; bin/ is 550: quick_start.md:200-206):
  the deployment folder, checked before the start.
"""

from __future__ import annotations

import os
import subprocess

from mindie_pack.deploy.launcher import HostLauncher, base_state
from mindie_pack.deploy.logs import open_log
from mindie_pack.deploy.preflight import DeployPlan
from mindie_pack.deploy.process import TOKEN_ENV, identify
from mindie_pack.deploy.state import DeploymentState
from mindie_pack.errors import PackError


class MindieLLMServerLauncher(HostLauncher):
    mode = "host"  # a host process like the daemon: status / logs / stop treat it the same

    def start(self, plan: DeployPlan, token: str) -> DeploymentState:
        if not os.access(plan.deployment_dir, os.W_OK | os.X_OK):
            raise PackError(f"{plan.deployment_dir}: not writable; mindie_llm_server writes kernel_meta into its "
                            "working directory (quick_start.md:200-206)")
        env = dict(plan.environment)
        env.pop("MIES_CONFIG_JSON_PATH", None)
        env[TOKEN_ENV] = token
        command = plan.command or [str(plan.daemon)]
        fd = open_log(plan.log_path)
        try:
            self.proc = subprocess.Popen(command, cwd=plan.deployment_dir, env=env, stdout=fd,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        finally:
            os.close(fd)
        state = base_state(plan, self.mode)
        state.pid = state.pgid = self.proc.pid
        state.token = token
        found = identify(self.proc.pid)
        if found is not None:
            state.create_time = found.create_time
        return state
