"""The builder's public API for later stages: what a built model directory is, read and checked once.

`deploy` (and anything else that serves a model directory) calls `read_deployable` instead of reading the
manifest or the verify internals itself, so the directory format has one owner: this package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mindie_pack.errors import PackError

DEFAULT_PROFILE = "mf-ckpt"


@dataclass(frozen=True)
class DeployableModel:
    path: Path
    manifest: dict[str, Any]

    @property
    def profile(self) -> str:
        """The serving profile the directory was built for (mf-ckpt, mf-safetensors, llm-boost)."""
        return str((self.manifest.get("options") or {}).get("profile") or DEFAULT_PROFILE)

    @property
    def tp(self) -> int:
        """The tensor-parallel degree it was built for (= MindIE worldSize)."""
        return int((self.manifest.get("options") or {}).get("tp") or 1)

    @property
    def name(self) -> str | None:
        name = (self.manifest.get("options") or {}).get("name")
        return str(name) if name else None


def read_deployable(model_dir: Path, *, check_files: bool = True) -> DeployableModel:
    """A directory written by `mindie-pack build`, refused unless every file matches its manifest."""
    from mindie_pack.builder.manifest import MANIFEST_NAME, read_manifest

    model_dir = model_dir.absolute()
    if not (model_dir / MANIFEST_NAME).is_file():
        raise PackError(f"{model_dir}: no {MANIFEST_NAME} (not a directory written by `mindie-pack build`)")
    manifest = read_manifest(model_dir)
    if check_files:
        from mindie_pack.builder.verify import VerifyReport, check_manifest

        report = VerifyReport(model_dir)
        check_manifest(model_dir, report)
        failed = [c for c in report.checks if not c.ok]
        if failed:
            raise PackError(f"{model_dir}: does not match its manifest: {failed[0].detail} (rebuild it, or "
                            "`mindie-pack verify` it)")
    return DeployableModel(model_dir, json.loads(json.dumps(manifest)))
