"""The five stages end to end on a tiny synthetic set, in-process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from synthetic_sets import make_membership_set

from synthaudit.models.config import AuditConfig
from synthaudit.models.stages import STAGES, AuditInputs, overall_progress, run_audit, run_stage, stage_done


@pytest.fixture()
def membership_set(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    labels = make_membership_set(
        tmp_path / "set", n_used=8, n_unused=8, n_fresh_generated=16, exact_copies=True
    )
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
    config = AuditConfig(method="pixels", image_size=32, decision="calibrated")
    outcome = run_audit(AuditInputs(root / "real", root / "generated", labels), config, tmp_path / "work")
    labelled = outcome.metrics["labelled"]
    assert outcome.metrics["decision_rule"] == "calibrated"
    assert labelled["applied"]["f1"] == pytest.approx(1.0)
    assert labelled["cross_validated"]["auc"] == pytest.approx(1.0)
    assert outcome.metrics["calibrated"] is True  # the used=0 labels also give p-values


@pytest.fixture()
def larger_set(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    labels = make_membership_set(tmp_path / "big", n_used=30, n_unused=60, n_fresh_generated=30, seed=3)
    return tmp_path / "big", labels


def test_known_not_used_labels_give_a_calibrated_fdr_verdict(larger_set, tmp_path: Path) -> None:
    root, labels = larger_set
    reference = dict(sorted((k, v) for k, v in labels.items() if v == 0)[:40])
    outcome = run_audit(
        AuditInputs(root / "real", root / "generated", reference),
        AuditConfig(method="pixels", image_size=32),
        tmp_path / "work",
    )
    m = outcome.metrics
    assert m["decision_rule"] == "fdr" and m["calibrated"] is True and m["fdr"] == 0.1
    assert m["n_reference"] == 40 and m["n_candidates"] == 50
    assert m["leakage"]["detected"] and m["leakage"]["p_value"] < 1e-6
    assert len(outcome.rows) == len(labels)  # every real image keeps its row (the ImageCLEF format needs it)
    by_id = {r.id: r for r in outcome.rows}
    for image_id in reference:
        assert by_id[image_id].role == "reference" and by_id[image_id].p_value is None
        assert by_id[image_id].used == 0
    candidates = [r for r in outcome.rows if r.role == "candidate"]
    assert all(r.p_value is not None and r.q_value is not None and r.q_value >= r.p_value for r in candidates)
    assert all(r.used == int(r.q_value <= 0.1) for r in candidates)  # type: ignore[operator]
    flagged = [r for r in candidates if r.used]
    assert sum(labels[r.id] == 0 for r in flagged) <= 0.1 * max(1, len(flagged)) + 1
    assert m["leakage"]["used_count_lower_bound"] <= 30


def test_a_reference_set_is_scored_with_the_real_images_but_gets_no_row(larger_set, tmp_path: Path) -> None:
    from PIL import Image

    root, labels = larger_set
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    held_out = sorted(k for k, v in labels.items() if v == 0)[:40]
    for image_id in held_out:  # the hold-out moves to its own folder
        (root / "real" / f"{image_id}.png").rename(reference_dir / f"{image_id}.png")
    Image.open(reference_dir / f"{held_out[0]}.png").save(reference_dir / "extra.png")  # ids may not clash
    with_reference = run_audit(
        AuditInputs(root / "real", root / "generated", reference=reference_dir),
        AuditConfig(method="pixels", image_size=32),
        tmp_path / "work",
    )
    assert {r.id for r in with_reference.rows} == set(labels) - set(held_out)
    assert {r.id for r in with_reference.reference_rows} == set(held_out) | {"extra"}
    assert all(r.role == "reference" for r in with_reference.reference_rows)
    assert with_reference.metrics["n_reference"] == 41 and with_reference.metrics["calibrated"]
    assert with_reference.metrics["leakage"]["detected"]


def test_the_same_hold_out_as_labels_or_as_a_set_gives_the_same_p_values(larger_set, tmp_path: Path) -> None:
    root, labels = larger_set
    held_out = sorted(k for k, v in labels.items() if v == 0)[:40]
    as_labels = run_audit(
        AuditInputs(root / "real", root / "generated", dict.fromkeys(held_out, 0)),
        AuditConfig(method="pixels", image_size=32),
        tmp_path / "a",
    )
    reference_dir = tmp_path / "reference"
    reference_dir.mkdir()
    for image_id in held_out:
        (root / "real" / f"{image_id}.png").rename(reference_dir / f"{image_id}.png")
    as_set = run_audit(
        AuditInputs(root / "real", root / "generated", reference=reference_dir),
        AuditConfig(method="pixels", image_size=32),
        tmp_path / "b",
    )
    p_labels = {r.id: r.p_value for r in as_labels.rows if r.role == "candidate"}
    p_set = {r.id: r.p_value for r in as_set.rows}
    assert p_labels == p_set
    assert as_labels.metrics["leakage"] == as_set.metrics["leakage"]


def test_without_known_not_used_images_the_audit_is_uncalibrated(larger_set, tmp_path: Path) -> None:
    root, labels = larger_set
    used_only = {k: 1 for k, v in labels.items() if v == 1}
    outcome = run_audit(
        AuditInputs(root / "real", root / "generated", used_only),
        AuditConfig(method="pixels", image_size=32),
        tmp_path / "work",
    )
    assert outcome.metrics["calibrated"] is False and outcome.metrics["leakage"] is None
    assert outcome.metrics["decision_rule"] == "prior"
    assert all(r.p_value is None and r.role == "candidate" for r in outcome.rows)
    with pytest.raises(ValueError, match="known not to be used"):
        run_audit(
            AuditInputs(root / "real", root / "generated"),
            AuditConfig(method="pixels", image_size=32, decision="fdr"),
            tmp_path / "fdr",
        )


def test_known_used_labels_measure_power(larger_set, tmp_path: Path) -> None:
    root, labels = larger_set
    outcome = run_audit(
        AuditInputs(root / "real", root / "generated", labels),
        AuditConfig(method="pixels", image_size=32),
        tmp_path / "work",
    )
    power = outcome.metrics["power"]
    assert outcome.metrics["decision_rule"] == "fdr"
    assert power["n_known_used"] == 30
    assert power["recall"] == pytest.approx(outcome.metrics["labelled"]["applied"]["recall"])
    assert "cross_validated" in outcome.metrics["labelled"]  # the F1 rule's honest estimate stays


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


@pytest.mark.slow
def test_models_imports_no_web_stack() -> None:
    code = (
        "import sys, models, models.stages, models.bench, models.methods, models.encoders, models.index;"
        "bad = [m for m in ('fastapi', 'sqlalchemy', 'celery', 'redis', 'starlette', 'synthaudit.app', 'synthaudit.worker') if m in sys.modules];"
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
