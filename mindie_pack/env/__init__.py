"""Environment: discovery of the Ascend/MindIE install, the daemon's environment, doctor checks, rank tables."""

from mindie_pack.env.discovery import Component, Installation, discover
from mindie_pack.env.doctor import Check, run_doctor
from mindie_pack.env.environment import DaemonEnv, daemon_environment, free_port

__all__ = ["Check", "Component", "DaemonEnv", "Installation", "daemon_environment", "discover", "free_port",
           "run_doctor"]
