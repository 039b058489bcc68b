"""Command groups of the CLI. Each module exposes `register(app)` and owns its own commands.

Keeping one module per stage lets each stage grow without touching the others (or cli.py).
"""

from mindie_pack.commands import (
    build_cmds,
    chat_cmds,
    client_cmds,
    config_cmds,
    deploy_cmds,
    emulator_cmds,
    env_cmds,
    export_cmds,
    k8s_cmds,
    runtime_cmds,
)

COMMAND_MODULES = (build_cmds, runtime_cmds, config_cmds, env_cmds, deploy_cmds, client_cmds, emulator_cmds,
                   export_cmds, chat_cmds, k8s_cmds)
