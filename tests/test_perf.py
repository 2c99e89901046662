"""`synthaudit perf` on a tiny workload, as on the GPU host: nothing importable but torch, timm, numpy,
pillow, safetensors and tqdm (no faiss, no service packages)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

BLOCKED = (
    "faiss",
    "fastapi",
    "sqlalchemy",
    "celery",
    "redis",
    "pydantic",
    "pydantic_settings",
    "pydicom",
    "matplotlib",
    "uvicorn",
    "alembic",
    "psycopg",
    "httpx",
    "app",
    "worker",
)
RUN = (
    "import runpy, sys\n"
    f"for name in {BLOCKED!r}: sys.modules[name] = None\n"
    "sys.argv = ['synthaudit.models.perf', *sys.argv[1:]]\n"
    "runpy.run_module('synthaudit.models.perf', run_name='__main__')\n"
)


@pytest.mark.slow
def test_perf_runs_with_the_gpu_hosts_packages_only(tmp_path: Path) -> None:
    repo = Path(__file__).resolve().parents[1]
    argv = [
        sys.executable,
        "-c",
        RUN,
        "--real",
        "24",
        "--generated",
        "48",
        "--size",
        "32",
        "--images-seen",
        "64",
        "--ceiling-steps",
        "1",
        "--device",
        "cpu",
        "--out",
        str(tmp_path),
        "--tmp",
        str(tmp_path),
    ]
    done = subprocess.run(argv, check=False, cwd=repo, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "end to end" in done.stdout
    report = json.loads((tmp_path / "perf.json").read_text())
    assert report["workload"] == {"real": 24, "generated": 48, "size": 32, "seed": 0, "shifted_copies": 0.0}
    assert report["machine"]["faiss"] is False
    paper = report["methods"]["paper"]
    assert [r["stage"] for r in paper["stages"]] == ["decode", "pretrain", "embed", "search", "decide"]
    by_stage = {r["stage"]: r for r in paper["stages"]}
    assert (
        paper["pretrain"]["images_seen"] >= 64
        and by_stage["pretrain"]["images"] == paper["pretrain"]["images_seen"]
    )
    for stage in ("pretrain", "embed", "search"):
        assert by_stage[stage]["ceiling_images_per_s"] > 0 and by_stage[stage]["share_of_ceiling"] > 0
    assert by_stage["decode"]["images"] == 72 and by_stage["decide"]["images"] == 24
    assert paper["end_to_end_s"] > 0 and report["methods"]["default"]["end_to_end_s"] > 0
    assert [p.name for p in tmp_path.iterdir()] == ["perf.json"]  # temporary PNGs and work folders removed


@pytest.mark.parametrize(("shift", "fired"), [(0.0, False), (0.03, True)])
def test_the_shifted_workload_is_the_one_that_opens_the_alignment_gate(
    tmp_path: Path, shift: float, fired: bool
) -> None:
    """`--shifted-copies` measures the default when its alignment gate fires; without it the gate stays shut."""
    from synthaudit.models.config import AuditConfig
    from synthaudit.models.perf import make_workload, write_pngs
    from synthaudit.models.stages import AuditInputs, read_alignment, run_audit

    real, generated = make_workload(60, 100, 64, seed=0, shift=shift)
    write_pngs(real, tmp_path / "real", "r")
    write_pngs(generated, tmp_path / "generated", "g")
    run_audit(AuditInputs(tmp_path / "real", tmp_path / "generated"), AuditConfig(), tmp_path / "work")
    record = read_alignment(tmp_path / "work")
    assert record is not None
    assert [view["fired"] for view in record["views"].values()] == [fired]
