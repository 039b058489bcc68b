"""MindIE conf/config.json: rules per release, templated rendering, validation, capacity planning."""

from mindie_pack.config.detect import Judgement, judge
from mindie_pack.config.plan import CapacityPlan, plan_capacity
from mindie_pack.config.problems import Problem
from mindie_pack.config.releases import RELEASES, Release, release_for
from mindie_pack.config.render import default_config, render_config
from mindie_pack.config.validate import Report, daemon_log_lines, validate_config, validate_config_file, validate_report
from mindie_pack.config.versions import detect_version, line_for
from mindie_pack.config.write import WriteResult, write_config

__all__ = ["RELEASES", "CapacityPlan", "Judgement", "Problem", "Release", "Report", "WriteResult", "daemon_log_lines",
           "default_config", "detect_version", "judge", "line_for", "plan_capacity", "release_for", "render_config",
           "validate_config", "validate_config_file", "validate_report", "write_config"]
