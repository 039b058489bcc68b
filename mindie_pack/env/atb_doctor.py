"""`doctor` for the atb / torch backends: the checks an operator of MindIE's atb path needs, each with its fix.

Release facts: CANN pairings from gitcode Ascend/release-management MindIE/26.0.0/release.md; 3.0 ships no
mindie-service/set_env.sh (pip package) and dropped MINDIE_LLM_FRAMEWORK_BACKEND (read up to 2.3:
environment_variable.md:82 @40fb0630); the old /usr/local/Ascend/mindie tree must be moved aside for 3.0
(quick_start.md, "注意" after step 6 @8b4871ad). The model-directory checks are env/atb_checks.py's.
"""

from __future__ import annotations

import os
from pathlib import Path

from mindie_pack.env.atb_checks import dtype_problem, installed_types_in, model_type_problem, permission_problem
from mindie_pack.env.atb_env import ATB_DEFAULTS, set_env_scripts_for
from mindie_pack.env.discovery import Installation
from mindie_pack.env.doctor import Check
from mindie_pack.env.mindie_llm import MindieLLM
from mindie_pack.errors import PackError

# MindIE release -> paired CANN (release-management MindIE/26.0.0/release.md)
CANN_PAIRS = {"2.1.RC2": "8.2.RC2", "2.2.RC1": "8.3.RC2", "2.3.0": "8.5.0", "3.0.0": "8.5.1"}


def _major(version: str | None) -> int:
    head = (version or "").split(".")[0]
    return int(head) if head.isdigit() else 0


def release_checks(inst: Installation, version: str | None, llm: MindieLLM | None) -> list[Check]:
    checks = []
    if version is None:
        return [Check("MindIE release", "warn", "no MindIE found (tree or mindie_llm)",
                      "pass --mindie-home (<= 2.3) or --mindie-python (3.0)")]
    where = f"mindie_llm in {llm.python}" if llm else f"{inst.mindie_service}"
    checks.append(Check("MindIE release", "ok", f"{version} ({where})"))
    cann = inst.version("cann-toolkit")
    paired = next((c for m, c in CANN_PAIRS.items() if version.startswith(m)), None)
    if paired is None:
        checks.append(Check("CANN pairing", "warn", f"MindIE {version}: no published CANN pairing we know",
                            "see the MindIE release notes"))
    elif cann is None:
        checks.append(Check("CANN pairing", "fail", f"MindIE {version} pairs with CANN {paired}; no CANN found",
                            f"install Ascend-cann-toolkit {paired}", blocking=True))
    elif not cann.startswith(paired):
        checks.append(Check("CANN pairing", "fail", f"MindIE {version} pairs with CANN {paired}, found {cann}",
                            f"install CANN {paired} (a mixed pair fails with `undefined symbol`)"))
    else:
        checks.append(Check("CANN pairing", "ok", f"MindIE {version} with CANN {cann}"))
    return checks


def script_checks(inst: Installation, version: str | None) -> list[Check]:
    scripts = set_env_scripts_for(inst.root, version, inst.mindie_service if _major(version) < 3 else None)
    missing = [str(s) for s in scripts if not s.is_file()]
    detail = ", ".join(str(s) for s in scripts)
    checks = [Check("set_env scripts", "fail" if missing else "ok",
                    f"missing: {', '.join(missing)}" if missing else f"present: {detail}",
                    "install the CANN toolkit and NNAL (ATB) packages" if missing else "", blocking=bool(missing))]
    if _major(version) >= 3:
        old = inst.root / "mindie"
        if old.is_dir():
            checks.append(Check("old MindIE tree", "warn", f"{old} exists next to a MindIE {version} pip install: its "
                                "libraries can be found first", f"mv {old} {old}-bak (MindIE 3.0 quick start)"))
        if os.environ.get("MINDIE_LLM_FRAMEWORK_BACKEND"):
            checks.append(Check("MINDIE_LLM_FRAMEWORK_BACKEND", "warn", "set in this shell, but MindIE 3.0 no longer "
                                "reads it (harmless)", "unset MINDIE_LLM_FRAMEWORK_BACKEND"))
    return checks


def variable_checks(world_size: int | None) -> list[Check]:
    """Each default with its reason and the value in effect (the operator's own value wins)."""
    checks = []
    for default in ATB_DEFAULTS:
        current = os.environ.get(default.name)
        value = current if current is not None else default.value
        source = "your environment" if current is not None else "mindie-pack default"
        checks.append(Check(f"env {default.name}", "ok", f"{value} ({source}): {default.reason}",
                            f"override with deploy --env {default.name}=VALUE"))
    if world_size and world_size > 1:
        addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
        checks.append(Check("env MASTER_ADDR/MASTER_PORT", "ok", f"{addr or '127.0.0.1 (deploy sets it)'} / "
                            f"{port or 'a free port from 29500 (deploy sets it)'}: worldSize {world_size} needs a "
                            "rendezvous (MindIE FAQ: missing MASTER_ADDR/MASTER_PORT)"))
    return checks


def package_checks(inst: Installation, llm: MindieLLM | None) -> list[Check]:
    packages = {k: (v or {}).get("version") or ((v or {}).get("path") and "present")
                for k, v in llm.packages.items()} if llm else dict(inst.packages)
    where = f" in {llm.python}" if llm else ""
    checks = []
    for name, why in (("torch", "the atb runner is PyTorch-based (mindie_llm/server/main.py:66-68)"),
                      ("torch_npu", "torch's NPU device (atb-models/set_env.sh resolves it)")):
        found = packages.get(name)
        checks.append(Check(f"python {name}", "ok" if found else "fail", f"{found}{where}" if found else
                            f"not importable{where}: {why}", f"pip install {name} (the version paired with CANN)",
                            blocking=False))
    if llm is not None:
        atb = (llm.packages.get("atb_llm") or {}).get("path")
        checks.append(Check("python atb_llm", "ok" if atb else "fail", atb or f"not importable in {llm.python} "
                            "(mindie_llm/server/main.py:70-71)", "" if atb else "install the atb_llm wheel of the "
                            "same MindIE release"))
    return checks


def model_checks(model_dir: Path, inst: Installation, version: str | None, atb_llm: Path | None) -> list[Check]:
    from mindie_pack.env.npu import query_npus

    chips: list[str] = []
    if inst.npu_smi:
        try:
            chips = [c.name for c in query_npus(inst.npu_smi).chips]
        except PackError:
            chips = []
    checks = []
    problem = dtype_problem(model_dir, chips)
    checks.append(Check("model torch_dtype", "fail" if problem else "ok", problem or
                        f"{model_dir / 'config.json'}: loadable on {', '.join(sorted(set(chips))) or 'any chip'}",
                        blocking=bool(problem)))
    found = model_type_problem(model_dir, installed_types_in(atb_llm), version)
    checks.append(Check("model_type", ("fail" if found[1] else "warn") if found else "ok",
                        found[0] if found else "served by the installed/listed atb_llm models", blocking=bool(
                            found and found[1])))
    problem = permission_problem(model_dir)
    checks.append(Check("model permissions", "fail" if problem else "ok", problem or "folders <= 0750, files "
                        "<= 0640, owned by you", blocking=bool(problem)))
    return checks


def atb_doctor(inst: Installation, *, llm: MindieLLM | None, model_dir: Path | None,
               world_size: int | None) -> list[Check]:
    version = (llm.version if llm else None) or inst.version("mindie")
    checks = release_checks(inst, version, llm) + script_checks(inst, version) + variable_checks(world_size)
    checks += package_checks(inst, llm)
    if model_dir is not None:
        atb_llm = llm.atb_llm_dir if llm else inst.root / "atb-models" / "atb_llm"
        checks += model_checks(model_dir, inst, version, atb_llm)
    return checks
