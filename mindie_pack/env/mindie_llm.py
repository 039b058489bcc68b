"""MindIE 3.0: the pip-installed `mindie_llm` in a Python environment (no /usr/local/Ascend/mindie tree).

Facts (MindIE-LLM 8b4871ad):
- the console entry point `mindie_llm_server = mindie_llm.server.main:main` (setup.py:129-131);
- main() needs `<pkg>/bin/mindieservice_daemon` and `<pkg>/conf/config.json` (mindie_llm/server/main.py:45-53), the
  `torch` and `atb_llm` packages (main.py:66-71), sets MINDIE_LLM_HOME_PATH=<pkg> and execs the daemon (main.py:56,
  :86-90); the daemon reads MIES_CONFIG_JSON_PATH when set, else <MINDIE_LLM_HOME_PATH>/conf/config.json with mode
  <= 0640 (src/utils/common_util.cpp:172-180, :264-290);
- it must start from a writable working directory: kernel_meta is written to the cwd
  (docs/zh/user_guide/quick_start/quick_start.md:200-206).

We never import the environment's packages into our process: its own interpreter answers one bounded query.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mindie_pack.errors import PackError

PROBE_TIMEOUT_S = 60.0
SERVER_ENTRY = "mindie_llm_server"

# Runs inside the target interpreter: where mindie_llm, atb_llm, torch, torch_npu are, and their versions.
_PROBE = r"""
import importlib.util, importlib.metadata, json, os, sys
out = {"python": sys.executable, "prefix": sys.prefix, "packages": {}}
for name in ("mindie_llm", "atb_llm", "torch", "torch_npu", "transformers"):
    info = {"path": None, "version": None}
    try:
        spec = importlib.util.find_spec(name)
    except Exception:
        spec = None
    if spec is not None and spec.origin:
        info["path"] = os.path.dirname(os.path.abspath(spec.origin))
    try:
        info["version"] = importlib.metadata.version(name)
    except Exception:
        pass
    out["packages"][name] = info
print(json.dumps(out))
"""


@dataclass
class MindieLLM:
    """A MindIE >= 3.0 install: the interpreter, the mindie_llm package folder, its version and neighbours."""

    python: Path
    prefix: Path
    package_dir: Path
    version: str | None
    server: Path | None  # the console script, when the environment has one
    packages: dict[str, dict[str, str | None]] = field(default_factory=dict)

    @property
    def config_path(self) -> Path:
        """Where 3.0 reads its config (main.py:50; common_util.cpp:280)."""
        return self.package_dir / "conf" / "config.json"

    @property
    def daemon(self) -> Path:
        return self.package_dir / "bin" / "mindieservice_daemon"

    @property
    def atb_llm_dir(self) -> Path | None:
        path = self.packages.get("atb_llm", {}).get("path")
        return Path(path) if path else None

    def command(self) -> list[str]:
        """How to start it: the console script, else the module's own `__main__` guard (main.py:93-94)."""
        if self.server is not None:
            return [str(self.server)]
        return [str(self.python), "-m", "mindie_llm.server.main"]

    def to_dict(self) -> dict[str, object]:
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


def probe_python(python: Path) -> dict[str, object]:
    if not python.exists():
        raise PackError(f"--mindie-python {python}: not found (give the interpreter of the environment where "
                        "`pip install mindie_llm` was run)")
    try:
        proc = subprocess.run([str(python), "-I", "-c", _PROBE], capture_output=True, timeout=PROBE_TIMEOUT_S,
                              env={"PATH": "/usr/bin:/bin"})
    except subprocess.TimeoutExpired:
        raise PackError(f"--mindie-python {python}: no answer within {PROBE_TIMEOUT_S:.0f} s") from None
    except OSError as exc:
        raise PackError(f"--mindie-python {python}: cannot run it ({exc.strerror})") from None
    if proc.returncode != 0:
        tail = proc.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise PackError(f"--mindie-python {python}: exit {proc.returncode} ({tail[0][:200]})")
    try:
        data = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise PackError(f"--mindie-python {python}: unexpected answer to the package probe") from None
    return dict(data)


def python_of(mindie_home: Path) -> Path | None:
    """The interpreter of a 3.0 install given as a folder: a venv/prefix (bin/python + bin/mindie_llm_server) or
    the mindie_llm package folder itself (<prefix>/lib/pythonX.Y/site-packages/mindie_llm)."""
    home = mindie_home.absolute()
    if (home / "bin" / SERVER_ENTRY).exists():
        for name in ("python3", "python"):
            if (home / "bin" / name).exists():
                return home / "bin" / name
    if (home / "__init__.py").is_file() and (home / "bin" / "mindieservice_daemon").exists():
        prefix = home.parent.parent.parent.parent  # site-packages -> pythonX.Y -> lib -> prefix
        for name in ("python3", "python"):
            if (prefix / "bin" / name).exists():
                return prefix / "bin" / name
    return None


def discover_mindie_llm(python: Path) -> MindieLLM | None:
    """The 3.0 install of this interpreter, or None when mindie_llm is not importable there."""
    data = probe_python(python)
    packages = dict(data.get("packages") or {})  # type: ignore[call-overload]
    info = packages.get("mindie_llm") or {}
    if not info.get("path"):
        return None
    prefix = Path(str(data.get("prefix")))
    server = prefix / "bin" / SERVER_ENTRY
    return MindieLLM(python=python.absolute(), prefix=prefix, package_dir=Path(info["path"]),
                     version=info.get("version"), server=server if server.exists() else None, packages=packages)
