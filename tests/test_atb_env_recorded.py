"""Discovery, doctor and the atb environment against outputs recorded on real machines (tests/fixtures/recorded,
sources in SOURCES.md), not only against our own stand-ins."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable
from pathlib import Path

import pytest

from mindie_pack.emulator.install import install_emulator
from mindie_pack.env.atb_env import atb_environment
from mindie_pack.env.doctor import run_doctor
from mindie_pack.env.npu import parse_npu_smi_info
from mindie_pack.env.ranktable import build_rank_table, device_ip
from mindie_pack.tiny_model import TinyModelSpec, make_tiny_model

RECORDED = Path(__file__).parent / "fixtures" / "recorded"


def replay(tool: Path, recorded: Path) -> None:
    """Make a stand-in tool print a recorded real output."""
    tool.write_text(f"#!/bin/sh\ncat {shlex.quote(str(recorded))}\n")
    os.chmod(tool, 0o755)


@pytest.mark.parametrize(("name", "chips", "chip", "hbm"), [
    ("npu-smi-info-910ProB.txt", 8, "910ProB", (18, 32768)),
    ("npu-smi-info-910B4-1.txt", 2, "910B4-1", (3197, 65536)),
    ("npu-smi-info-310P3.txt", 2, "310P3", (None, None)),  # no HBM column on 310P
])
def test_recorded_npu_smi_tables_parse(name: str, chips: int, chip: str, hbm: tuple[int | None, int | None]) -> None:
    report = parse_npu_smi_info((RECORDED / name).read_text())
    assert [c.npu for c in report.chips] == list(range(chips))
    assert {c.name for c in report.chips} == {chip}
    assert all(c.health == "OK" for c in report.chips)
    assert (report.chips[0].hbm_used_mb, report.chips[0].hbm_total_mb) == hbm
    assert report.processes == []


def test_recorded_hccn_tool_answer_feeds_the_rank_table(tmp_path: Path) -> None:
    tool = tmp_path / "hccn_tool"
    replay(tool, RECORDED / "hccn_tool-i3-ip-g.txt")
    assert device_ip(str(tool), 3) == "29.1.112.213"
    table = build_rank_table(str(tool), [3], server_id="10.0.0.1")
    assert table["server_list"][0]["device"] == [{"device_id": "3", "device_ip": "29.1.112.213", "rank_id": "0"}]


@pytest.fixture(scope="module")
def atb_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from mindie_pack.builder.assemble import build_model_dir
    from mindie_pack.builder.options import BuildOptions

    root = tmp_path_factory.mktemp("atb")
    hf = make_tiny_model(root / "hf", TinyModelSpec(family="qwen2", dtype="bfloat16"))
    build_model_dir(BuildOptions(model_dir=hf, output_dir=root / "model", profile="atb"))
    return root / "model"


@pytest.mark.parametrize(("recorded", "refused"), [("npu-smi-info-310P3.txt", True),
                                                   ("npu-smi-info-910B4-1.txt", False),
                                                   ("npu-smi-info-910ProB.txt", False)])
def test_doctor_reads_the_chip_from_a_recorded_table(recorded: str, refused: bool, atb_model: Path,
                                                     tmp_path: Path) -> None:
    emu = install_emulator(tmp_path / "Ascend", mindie_version="3.0.0")
    replay(emu.tools_dir / "npu-smi", RECORDED / recorded)
    checks = {c.name: c for c in run_doctor(mindie_python=emu.mindie_service / "bin" / "python",
                                            model_dir=atb_model, ports=())}
    assert checks["npu-smi"].status == "ok"
    dtype = checks["model torch_dtype"]
    if refused:
        assert dtype.status == "fail" and dtype.blocking
        assert "bfloat16" in dtype.detail and "310P3" in dtype.detail and "--dtype float16" in dtype.detail
    else:
        assert dtype.status == "ok"
    assert checks["MindIE release"].detail.startswith("3.0.0")
    assert checks["CANN pairing"].status == "ok"  # the emulator pairs 3.0.0 with CANN 8.5.1
    assert "component mindie" not in checks  # 3.0 has no mindie tree
    assert checks["python atb_llm"].status == "ok"


def test_atb_environment_per_release(tmp_path: Path) -> None:
    emu30 = install_emulator(tmp_path / "a30", mindie_version="3.0.0")
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "NPU_MEMORY_FRACTION": "0.95"}
    env = atb_environment(root=emu30.root, mindie_version="3.0.0", base_env=base, world_size=2,
                          overrides={"OMP_NUM_THREADS": "4"}).env
    assert "MINDIE_LLM_FRAMEWORK_BACKEND" not in env  # 3.0 removed it
    assert env["NPU_MEMORY_FRACTION"] == "0.95"  # the operator's value wins over our default
    assert env["OMP_NUM_THREADS"] == "4"  # --env wins over both
    assert env["ATB_WORKSPACE_MEM_ALLOC_GLOBAL"] == "1"  # restored over nnal/atb/set_env.sh's 0
    assert env["ATB_HOME_PATH"].startswith(str(emu30.root))  # nnal/atb/set_env.sh was sourced
    assert env["MASTER_ADDR"] == "127.0.0.1" and env["MASTER_PORT"].isdigit()
    emu23 = install_emulator(tmp_path / "a23", mindie_version="2.3.0", backend="atb")
    env = atb_environment(root=emu23.root, mindie_version="2.3.0", mindie_service=emu23.mindie_service,
                          base_env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)}).env
    assert env["MINDIE_LLM_FRAMEWORK_BACKEND"] == "ATB"
    assert env["MIES_INSTALL_PATH"] == str(emu23.mindie_service)
    assert env["NPU_MEMORY_FRACTION"] == "0.8" and "MASTER_ADDR" not in env
    assert "MS_SCHED_PORT" not in env


def test_doctor_cli_atb_json(atb_model: Path, tmp_path: Path, cli: Callable[..., object]) -> None:
    emu = install_emulator(tmp_path / "Ascend", mindie_version="2.3.0", backend="atb", chip="310P3", npu_count=2)
    result = cli("doctor", "--mindie-home", emu.mindie_service, "--model-dir", atb_model, "--ports", "", "--json")
    data = json.loads(result.stdout)  # type: ignore[attr-defined]
    names = {c["name"]: c for c in data["checks"]}
    assert data["ok"] is False and result.exit_code == 1  # type: ignore[attr-defined]
    assert names["model torch_dtype"]["status"] == "fail"
    assert names["CANN pairing"]["detail"] == "MindIE 2.3.0 with CANN 8.5.0"
    assert "python mindspore" not in names
