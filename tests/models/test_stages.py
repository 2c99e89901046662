"""The five stages end to end on a tiny synthetic set, in-process."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models.config import AuditConfig
from models.stages import STAGES, AuditInputs, overall_progress, run_audit, run_stage, stage_done
from synthetic_sets import make_membership_set


@pytest.fixture()
def membership_set(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    labels = make_membership_set(tmp_path / "set", n_used=8, n_unused=8, n_fresh_generated=16, exact_copies=True)
    return tmp_path / "set", labels


def test_pixels_audit_finds_exact_copies(membership_set, tmp_path: Path) -> None:
    root, labels = membership_set
    config = AuditConfig(method="pixels", image_size=32)
    outcome = run_audit(AuditInputs(root / "real", root / "generated"), config, tmp_path / "work")
    assert len(outcome.rows) == len(labels)
    for row in outcome.rows:
        if labels[row.id] == 1:
            assert row.similarity == pytest.approx(1.0, abs=1e-4)
            assert row.used == 1
    assert outcome.metrics["decision_rule"] == "prior"
    assert outcome.metrics["n_decided_used"] == 8
    assert set(outcome.metrics["timings"]) == set(STAGES)


def test_labels_calibrate_and_report_metrics(membership_set, tmp_path: Path) -> None:
    root, labels = membership_set
    config = AuditConfig(method="pixels", image_size=32)
    outcome = run_audit(AuditInputs(root / "real", root / "generated", labels), config, tmp_path / "work")
    labelled = outcome.metrics["labelled"]
    assert outcome.metrics["decision_rule"] == "calibrated"
    assert labelled["applied"]["f1"] == pytest.approx(1.0)
    assert labelled["cross_validated"]["auc"] == pytest.approx(1.0)


def test_stages_skip_finished_work_and_refuse_another_config(membership_set, tmp_path: Path) -> None:
    root, _ = membership_set
    config = AuditConfig(method="pixels", image_size=32)
    inputs = AuditInputs(root / "real", root / "generated")
    work = tmp_path / "work"
    run_stage("decode", work, inputs, config)
    assert stage_done("decode", work)
    before = (work / "images.npz").stat().st_mtime_ns
    run_stage("decode", work, inputs, config)
    assert (work / "images.npz").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="another configuration"):
        run_stage("embed", work, inputs, AuditConfig(method="pixels", image_size=16))


def test_overall_progress_is_monotonic() -> None:
    values = [overall_progress(stage, f) for stage in STAGES for f in (0.0, 0.5, 1.0)]
    assert values == sorted(values)
    assert values[0] == 0.0 and values[-1] == 100.0


def test_unknown_method_is_named(membership_set, tmp_path: Path) -> None:
    root, _ = membership_set
    with pytest.raises(ValueError, match="unknown method 'nope'"):
        run_audit(AuditInputs(root / "real", root / "generated"), AuditConfig(method="nope"), tmp_path / "w")


def test_models_imports_no_web_stack() -> None:
    code = (
        "import sys, models, models.stages, models.bench, models.methods, models.encoders, models.index;"
        "bad = [m for m in ('fastapi', 'sqlalchemy', 'celery', 'redis', 'starlette', 'app', 'worker') if m in sys.modules];"
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
