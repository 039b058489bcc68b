"""MindIE conf/config.json: schema per version line, templated rendering, validation, capacity planning."""

from mindie_pack.config.plan import CapacityPlan, plan_capacity
from mindie_pack.config.problems import Problem
from mindie_pack.config.render import default_config, render_config
from mindie_pack.config.validate import validate_config, validate_config_file
from mindie_pack.config.versions import detect_version, line_for
from mindie_pack.config.write import WriteResult, write_config

__all__ = ["CapacityPlan", "Problem", "WriteResult", "default_config", "detect_version", "line_for",
           "plan_capacity", "render_config", "validate_config", "validate_config_file", "write_config"]
