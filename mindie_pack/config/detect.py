"""Which release's rules judge a config.json: the installed MindIE's version file when we can see it, else the
version the user names, else the file's shape. A file whose markers point at more than one layout (or at none)
is judged leniently: by every layout it may belong to, an error only where all of them agree."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindie_pack.config.releases import BY_NAME, LAYOUT_DEFAULT, Release, release_for

# (JSON path, predicate on the value or None for "present") -> the layouts a file carrying it may belong to.
# Sources: mindie-service.md §1.2 and §1.10 (1.0.x keys, from the hiascend 1.0.RC3/1.0.0 pages and the configs
# MindFormers published), the ParamChecker tables of src/config_manager/ at 40fb0630 (2.3.0) and 8b4871ad (3.0.0).
_ONE = ("1.0",)
_TWO_THREE = ("2.x", "3.0")
_NOT_THREE = ("1.0", "2.x")
_THREE = ("3.0",)
MARKERS: tuple[tuple[tuple[str, ...], Any, tuple[str, ...]], ...] = (
    *((("LogConfig", k), None, _ONE) for k in ("logLevel", "logPath", "logFileSize", "logFileNum")),
    *((("ServerConfig", k), None, _ONE) for k in ("tlsCrl", "managementTlsCrl", "interCommTlsCrl",
                                                  "interCommTlsCaFile", "pdInterNodeTLSEnabled",
                                                  "pdCommunicationPort")),
    *((("BackendConfig", k), None, _ONE) for k in ("interNodeTlsCaFile", "interNodeTlsCrl")),
    *((("ServerConfig", k), None, _TWO_THREE) for k in ("tokenTimeout", "e2eTimeout", "tlsCrlPath", "tlsCrlFiles",
                                                        "distDPServerEnabled", "metricsTlsCert")),
    (("LogConfig", "dynamicLogLevel"), None, _TWO_THREE),
    (("BackendConfig", "kvPoolConfig"), None, _TWO_THREE),
    (("EnableDynamicAdjustTimeoutConfig",), None, _TWO_THREE),
    # removed in 3.0.0 (server_config.cpp / backend_config.cpp tables at 8b4871ad no longer declare them)
    *((("ServerConfig", k), None, _NOT_THREE) for k in ("tlsPkPwd", "kmcKsfMaster", "kmcKsfStandby",
                                                        "managementTlsPkPwd")),
    *((("BackendConfig", k), None, _NOT_THREE) for k in ("interNodeTlsPkPwd", "interNodeKmcKsfMaster")),
    # new in 3.0.0
    (("ServerConfig", "HealthCheckConfig"), None, _THREE),
    (("ServerConfig", "maxJsonDepth"), None, _THREE),
    (("BackendConfig", "ScheduleConfig", "maxN"), None, _THREE),
    (("BackendConfig", "kvPoolConfig", "backend"), lambda v: v == "memcache", _THREE),
    (("BackendConfig", "ModelDeployConfig", "truncation"), lambda v: type(v) is int, _THREE),
    (("BackendConfig", "ModelDeployConfig", "ModelConfig", 0, "backendType"), lambda v: v == "torch", _THREE),
)
PRE_RC3_MARKER = "OtherParam"


@dataclass(frozen=True)
class Judgement:
    releases: tuple[Release, ...]  # one, or several when the shape leaves it open (lenient)
    reason: str
    unsupported: str = ""  # set for a layout older than 1.0.RC3: nothing else is judged

    @property
    def release(self) -> Release:
        return self.releases[0]

    @property
    def lenient(self) -> bool:
        return len(self.releases) > 1

    @property
    def name(self) -> str:
        return " or ".join(r.name for r in self.releases)

    def to_dict(self) -> dict[str, Any]:
        return {"release": self.name, "releases": [r.name for r in self.releases], "layouts":
                sorted({r.layout for r in self.releases}), "reason": self.reason, "lenient": self.lenient,
                "rules_from": [r.source for r in self.releases], "unsupported": self.unsupported or None}


def _get(data: Any, path: tuple[Any, ...]) -> tuple[bool, Any]:
    for key in path:
        if isinstance(key, int):
            if not isinstance(data, list) or len(data) <= key:
                return False, None
        elif not isinstance(data, dict) or key not in data:
            return False, None
        data = data[key]
    return True, data


def markers(data: Any) -> list[tuple[str, tuple[str, ...]]]:
    """(dotted path, layouts) of every marker the file carries."""
    found = []
    for path, predicate, layouts in MARKERS:
        present, value = _get(data, path)
        if present and (predicate is None or predicate(value)):
            found.append((".".join(str(p) for p in path), layouts))
    return found


def judge_shape(data: Any) -> Judgement:
    if isinstance(data, dict) and PRE_RC3_MARKER in data:
        return Judgement((BY_NAME["1.0.RC3"],), "file shape: top-level OtherParam", unsupported=(
            "the OtherParam layout of MindIE 1.0.RC1/1.0.RC2 (before 1.0.RC3) is not supported: mindie-pack judges "
            "1.0.RC3 and later; start from the conf/config.json of your release"))
    found = markers(data)
    if not found:
        layouts: set[str] = set(_TWO_THREE)
        reason = "file shape: no marker of a layout; judged by the 2.3.0 and 3.0.0 rules, errors where both agree"
    else:
        layouts = set.intersection(*(set(lay) for _, lay in found))
        if layouts:
            decisive = sorted(found, key=lambda m: len(m[1]))  # the markers that narrow it most first
            reason = f"file shape: {', '.join(p for p, _ in decisive[:3])}"
        else:
            layouts = set.union(*(set(lay) for _, lay in found))
            groups: dict[tuple[str, ...], str] = {}
            for path, lay in found:
                groups.setdefault(lay, path)
            reason = ("file shape mixes markers of several layouts (" + "; ".join(
                f"{path} -> {'/'.join(lay)}" for lay, path in groups.items()) + "): judged leniently, an error only "
                "where every layout it may belong to agrees")
    releases = tuple(BY_NAME[LAYOUT_DEFAULT[lay]] for lay in ("1.0", "2.x", "3.0") if lay in layouts)
    return Judgement(releases, reason)


def installed_version(mindie_home: Path | None) -> tuple[str | None, str]:
    """The version file of a MindIE install we can see (--mindie-home, MIES_INSTALL_PATH or the default root)."""
    from mindie_pack.env.discovery import discover

    try:
        inst = discover(mindie_home=mindie_home)
    except OSError:
        return None, ""
    version = inst.version("mindie")
    where = inst.mindie_service or mindie_home
    return version, f"version file of the MindIE install at {where}" if version else ""


def judge(data: Any, *, version: str | None = None, install_version: str | None = None,
          install_reason: str = "") -> Judgement:
    """install_version (what the install says) beats version (what the user says) beats the file's shape."""
    if isinstance(data, dict) and PRE_RC3_MARKER in data:
        return judge_shape(data)
    if install_version:
        return Judgement((release_for(install_version),), f"{install_reason or 'installed MindIE'}: "
                         f"{install_version}")
    if version:
        return Judgement((release_for(version),), f"--mindie-version {version}")
    return judge_shape(data)
