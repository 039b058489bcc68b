"""The MindIE 3.0 stand-in: a Python environment with a `mindie_llm` package and its `mindie_llm_server` entry
point, laid out as `pip install mindie_llm` leaves it (MindIE-LLM 8b4871ad):

- `<site-packages>/mindie_llm/{bin/mindieservice_daemon, conf/config.json, lib/}` (server/main.py:45-62);
- `mindie_llm_server = mindie_llm.server.main:main` (setup.py:129-131) as a console script in `<venv>/bin`;
- `atb_llm` with one folder per model it serves (atb_llm/models/__init__.py:84-98), and `torch_npu`.

The package files are written by us (not pip-installed: there is nothing to build, and a fresh machine must not need
the network for it); the dist-info carries the version and the entry point as a wheel install would. The venv sees our
own environment (torch, mindie_pack) through a .pth file, and the daemon stand-in runs our emulator.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

from mindie_pack.builder.atb_models import SHIPPED_LISTS
from mindie_pack.errors import PackError

VENV_NAME = "mindie-venv"

# Stand-in of mindie_llm/server/main.py: the same contract (checks, MINDIE_LLM_HOME_PATH, exec of the daemon).
SERVER_MAIN = '''"""Stand-in of mindie_llm.server.main (mindie-pack emulator): checks what 8b4871ad main.py:42-90
checks, then execs <pkg>/bin/mindieservice_daemon with MINDIE_LLM_HOME_PATH set."""
import importlib.util
import os
import sys
from pathlib import Path


def main():
    pkg_root = Path(__file__).resolve().parents[1]
    daemon = pkg_root / "bin" / "mindieservice_daemon"
    if not daemon.is_file():
        raise RuntimeError(f"mindieservice_daemon not found at {daemon}")
    config = pkg_root / "conf" / "config.json"
    if not config.is_file():
        raise RuntimeError(f"config.json not found at {config}")
    if not (pkg_root / "lib").is_dir():
        raise RuntimeError(f"Lib directory not found at {pkg_root / 'lib'}")
    for name in ("torch", "atb_llm"):
        if importlib.util.find_spec(name) is None:
            raise ImportError(f"{name} is not installed")
    env = os.environ.copy()
    env["MINDIE_LLM_HOME_PATH"] = str(pkg_root)
    os.execve(str(daemon), [str(daemon)] + sys.argv[1:], env)


if __name__ == "__main__":
    main()
'''

DAEMON = """#!/bin/sh
# mindieservice_daemon of the mindie-pack emulator, inside the mindie_llm stand-in package (MindIE 3.0 layout).
MINDIE_EMULATOR_HOME="${{MINDIE_LLM_HOME_PATH:-$(cd "$(dirname "$0")/.." && pwd)}}"
export MINDIE_EMULATOR_HOME
exec {python} -m mindie_pack.emulator.daemon "$@"
"""

CONSOLE_SCRIPT = """#!{python}
# -*- coding: utf-8 -*-
import sys
from mindie_llm.server.main import main
if __name__ == "__main__":
    sys.exit(main())
"""


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    os.chmod(path, mode)


def _site_packages(venv: Path) -> Path:
    found = sorted((venv / "lib").glob("python3*/site-packages"))
    if not found:
        raise PackError(f"{venv}: no lib/python3*/site-packages after `python -m venv`")
    return found[0]


def install_mindie_llm_venv(prefix: Path, *, mindie_version: str, config_text: str, emulator_text: str) -> Path:
    """Create `<prefix>/mindie-venv` with the stand-in packages; return the venv folder."""
    venv = prefix / VENV_NAME
    if not (venv / "bin" / "python").exists():
        try:
            subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                           capture_output=True, timeout=120)
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            raise PackError(f"{venv}: python -m venv failed ({exc})") from None
    site = _site_packages(venv)
    # Our environment (torch, transformers, mindie_pack) visible in the stand-in venv, as --system-site-packages
    # would make a system install visible; addsitedir also processes its .pth files (editable installs).
    ours = sysconfig.get_paths()["purelib"]
    _write(site / "mindie_pack_emulator.pth", f"import site; site.addsitedir({ours!r})\n")
    pkg = site / "mindie_llm"
    _write(pkg / "__init__.py", f'"""mindie_llm stand-in."""\n__version__ = "{mindie_version}"\n')
    _write(pkg / "server" / "__init__.py", "")
    _write(pkg / "server" / "main.py", SERVER_MAIN)
    _write(pkg / "bin" / "mindieservice_daemon", DAEMON.format(python=shlex.quote(sys.executable)), 0o550)
    os.chmod(pkg / "bin", 0o550)  # bin is 550 in a real install (quick_start.md:202): why the cwd must differ
    for folder in ("lib", "logs", "conf"):
        (pkg / folder).mkdir(exist_ok=True)
        os.chmod(pkg / folder, 0o750)
    _write(pkg / "conf" / "config.json", config_text, 0o640)
    _write(pkg / "conf" / "emulator.json", emulator_text, 0o640)
    dist = site / f"mindie_llm-{mindie_version}.dist-info"
    _write(dist / "METADATA", f"Metadata-Version: 2.1\nName: mindie_llm\nVersion: {mindie_version}\n"
           "Summary: MindIE LLM stand-in (mindie-pack emulator)\n")
    _write(dist / "entry_points.txt", "[console_scripts]\nmindie_llm_server = mindie_llm.server.main:main\n")
    _write(dist / "INSTALLER", "mindie-pack\n")
    _write(dist / "RECORD", "")
    _write(venv / "bin" / "mindie_llm_server", CONSOLE_SCRIPT.format(python=venv / "bin" / "python"), 0o755)
    _install_atb_llm(site, mindie_version)
    _write(site / "torch_npu" / "__init__.py", '"""torch_npu stand-in (mindie-pack emulator): no NPU here."""\n'
           '__version__ = "2.8.0"\n')
    return venv


def _install_atb_llm(site: Path, mindie_version: str) -> None:
    release = "3.0.0" if mindie_version.split(".")[0] not in ("1", "2") else "2.3.0"
    write_atb_llm(site / "atb_llm", SHIPPED_LISTS[release][1])


def write_atb_llm(folder: Path, model_types: tuple[str, ...]) -> None:
    """An atb_llm stand-in whose models/ lists what the release serves (one folder each, as the real package)."""
    _write(folder / "__init__.py", '"""atb_llm stand-in (mindie-pack emulator)."""\n')
    for name in ("base", *model_types):
        _write(folder / "models" / name / "__init__.py", "")
