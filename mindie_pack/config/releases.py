"""The MindIE releases whose conf/config.json we judge, and where each one's rules come from.

Only 2.3.0 (MindIE-LLM commit 40fb0630) and 3.0.0 (tag v3.0.0, commit 8b4871ad) have public source; the other
releases are closed, so their rules come from the documentation and the configs published for them, and where
those are unsure a rule is a warning, never an error.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from mindie_pack.errors import PackError


@dataclass(frozen=True)
class Release:
    name: str  # "1.0.RC3", "1.0.0", "2.0.x", "2.1.x", "2.2.x", "2.3.0", "3.0.0"
    layout: str  # which schema and template: "1.0", "2.x" or "3.0"
    open_source: bool  # True: rules read in MindIE-LLM's source; False: docs and published configs only
    source: str  # where the rules come from
    backends: tuple[str, ...]  # backendType values the release serves

    @property
    def order(self) -> int:
        return RELEASE_NAMES.index(self.name)


_DOCS_10 = ("closed source: hiascend.com MindIE 1.0.RC3 / 1.0.0 config pages and the 1.0.RC3 configs MindFormers "
            "published (research/llm_boost/llm_boost.md); rules beyond them are warnings")
_DOCS_2X = ("closed source: judged by the MindIE 2.3.0 source (MindIE-LLM 40fb0630) where the 2.x docs agree; "
            "fields first known compulsory in 2.3.0 are warnings")
RELEASES: tuple[Release, ...] = (
    Release("1.0.RC3", "1.0", False, _DOCS_10, ("atb", "ms")),
    Release("1.0.0", "1.0", False, _DOCS_10, ("atb", "ms")),
    Release("2.0.x", "2.x", False, _DOCS_2X, ("atb", "ms")),
    Release("2.1.x", "2.x", False, _DOCS_2X, ("atb", "ms")),
    Release("2.2.x", "2.x", False, _DOCS_2X, ("atb", "ms")),
    Release("2.3.0", "2.x", True, "MindIE-LLM source at commit 40fb0630 (src/config_manager/)", ("atb", "ms")),
    Release("3.0.0", "3.0", True, "MindIE-LLM source at tag v3.0.0, commit 8b4871ad (src/config_manager/)",
            ("atb", "torch")),
)
RELEASE_NAMES = tuple(r.name for r in RELEASES)
BY_NAME = {r.name: r for r in RELEASES}
LAYOUTS = ("1.0", "2.x", "3.0")
# The release judging a layout when only the file's shape tells (the newest release of that layout).
LAYOUT_DEFAULT = {"1.0": "1.0.0", "2.x": "2.3.0", "3.0": "3.0.0"}
_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.(RC\d+|\d+|T\d+(?:\.\d+)?|x))?(?:\.(?:B|beta)\d+)?$", re.IGNORECASE)


class UnsupportedRelease(PackError):
    """A release older than 1.0.RC3 (its OtherParam layout) or newer than we know."""


def parse_version(version: str) -> tuple[int, int, str]:
    match = _VERSION.match(version.strip())
    if not match:
        raise PackError(f"MindIE version {version!r}: expected e.g. 1.0.RC3, 1.0.0, 2.1.RC2, 2.3.0, 3.0.0")
    return int(match.group(1)), int(match.group(2)), (match.group(3) or "").upper()


def release_for(version: str) -> Release:
    """The release whose rules judge `version` (a release name, a layout name, or an installed version string)."""
    text = version.strip()
    if text in BY_NAME:
        return BY_NAME[text]
    if text in LAYOUTS:
        return BY_NAME[LAYOUT_DEFAULT[text]]
    major, minor, patch = parse_version(text)
    if (major, minor) == (1, 0):
        if patch in ("RC1", "RC2"):
            raise UnsupportedRelease(f"MindIE {text} is not supported: its config.json uses the OtherParam layout "
                                     "of 1.0.RC1/1.0.RC2; mindie-pack supports 1.0.RC3 and later")
        return BY_NAME["1.0.RC3" if patch == "RC3" else "1.0.0"]
    if major == 2 and minor <= 3:
        return BY_NAME["2.3.0" if minor == 3 else f"2.{minor}.x"]
    if major == 3 and minor == 0:
        return BY_NAME["3.0.0"]
    raise UnsupportedRelease(f"MindIE {text} is not supported (supported: 1.0.RC3, 1.0.0, 2.0 - 2.3, 3.0.0)")


def line_for(version: str) -> str:
    """The config layout ("1.0", "2.x", "3.0") of a release, or a layout name passed as is."""
    return version if version in LAYOUTS else release_for(version).layout
