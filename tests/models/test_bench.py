"""The bench's calibrated figures: hand-checked on known scores, and equal to the engine's own verdict."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthaudit.models import bench, calibration
from synthaudit.models.config import AuditConfig
from synthaudit.models.stages import AuditInputs, run_audit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthetic_sets import make_membership_set


def _known_scores() -> tuple[list[str], np.ndarray, dict[str, int], list[str]]:
    """20 reference images scoring 0..19; candidates: 10 used at 100..109 and 5 not used at 50..54 (above
    every reference), 10 not used at 0.5..9.5, and one unlabelled image at 200."""
    ids, scores, labels = [], [], {}
    for i in range(20):
        ids.append(f"ref{i:02d}"), scores.append(float(i))
        labels[ids[-1]] = 0
    for i in range(10):
        ids.append(f"used{i}"), scores.append(100.0 + i)
        labels[ids[-1]] = 1
    for i in range(5):
        ids.append(f"high{i}"), scores.append(50.0 + i)
        labels[ids[-1]] = 0
    for i in range(10):
        ids.append(f"low{i}"), scores.append(0.5 + i)
        labels[ids[-1]] = 0
    ids.append("unknown"), scores.append(200.0)
    return ids, np.array(scores), labels, [f"ref{i:02d}" for i in range(20)]


def test_calibrated_figures_from_known_scores() -> None:
    ids, scores, labels, reference = _known_scores()
    row = bench.calibrated_figures(ids, scores, labels, reference, fdr=0.1)
    # 16 candidates above every reference (p = 1/21); the next one, 9.5, has p = 11/21: BH flags the 16
    # (16/26 * 0.1 >= 1/21), 5 of them not used, 10 used, 1 unlabelled (not counted in the FDP).
    assert (row["n_reference"], row["n_candidates"]) == (20, 26)
    assert row["flagged"] == 16 and row["false_flags"] == 5
    assert row["fdp"] == pytest.approx(5 / 15)
    assert row["tpr_at_fdr"] == 1.0 and row["used_candidates"] == 10
    candidates = scores[20:]
    assert row["used_lower_bound"] == calibration.used_count_lower_bound(candidates, scores[:20])
    assert row["leakage_p"] == pytest.approx(calibration.leakage_test(candidates, scores[:20]).p_value)
    assert row["detected"] is True and row["min_p_value"] == pytest.approx(1 / 21)


def test_calibrated_figures_when_nothing_can_be_flagged() -> None:
    ids, scores, labels, reference = _known_scores()
    # two reference images only: the smallest p-value is 1/3 > 0.1 * 36/36, so BH flags nothing
    row = bench.calibrated_figures(ids, scores, labels, ["ref00", "ref01"], fdr=0.1)
    assert row["flagged"] == 0 and row["fdp"] == 0.0 and row["tpr_at_fdr"] == 0.0
    assert 1 / (row["n_reference"] + 1) > 0.1
    assert calibration.min_reference_size(0.1, row["n_candidates"], row["used_candidates"]) > 2
    with pytest.raises(ValueError):
        bench.calibrated_figures(ids, scores, labels, [], fdr=0.1)
    all_labels = dict.fromkeys(ids, 0)
    null = bench.calibrated_figures(ids, scores, all_labels, reference, fdr=0.1)
    assert math.isnan(null["tpr_at_fdr"]) and null["fdp"] == 1.0  # every flag is false when none is used


def test_draw_reference_is_a_seeded_share_of_the_not_used() -> None:
    labels = {f"i{k:03d}": int(k % 3 == 0) for k in range(150)}  # 50 used, 100 not used
    ref = bench.draw_reference(labels, 0.4, seed=7)
    assert len(ref) == 40 and all(labels[i] == 0 for i in ref) and ref == sorted(ref)
    assert ref == bench.draw_reference(dict(reversed(list(labels.items()))), 0.4, seed=7)  # order-free
    assert ref != bench.draw_reference(labels, 0.4, seed=8)
    not_used = sorted(i for i, v in labels.items() if v == 0)
    expected = sorted(not_used[j] for j in np.random.default_rng(7).choice(100, size=40, replace=False))
    assert ref == expected  # the documented recipe, which benchmarks/calibrated_check.py writes as REF.csv


@pytest.mark.slow
def test_redraws_keep_the_null_detect_rate_near_the_level() -> None:
    rng = np.random.default_rng(0)
    ids = [f"x{i:04d}" for i in range(600)]
    labels = dict.fromkeys(ids, 0)
    out = bench.redraw_figures(ids, rng.normal(size=600), labels, fdr=0.1, seed=0, draws=200)
    assert out["detect_rate"] <= 0.05 + 3 * math.sqrt(0.05 * 0.95 / 200)
    assert out["mean_flagged"] < 1.0 and math.isnan(out["mean_tpr"])


def test_bench_figures_equal_the_engine_verdict_with_reference_labels(tmp_path: Path) -> None:
    folder = tmp_path / "tiny"
    labels = make_membership_set(folder, n_used=30, n_unused=50, n_fresh_generated=20, size=32, seed=4)
    config = AuditConfig(method="pixels", image_size=32, seed=3)
    [row] = bench.run_bench([folder], ["pixels"], config, tmp_path / "work", redraws=5)
    reference = bench.draw_reference(labels, 0.4, seed=3)
    assert row["n_reference"] == 20 and row["n_candidates"] == 60 and row["used_candidates"] == 30
    # The engine, given the reference as used=0 labels, scores the same pool and decides the same way.
    outcome = run_audit(
        AuditInputs(folder / "real", folder / "generated", dict.fromkeys(reference, 0)),
        config,
        tmp_path / "engine",
    )
    leak = outcome.metrics["leakage"]
    assert leak["p_value"] == pytest.approx(row["leakage_p"])
    assert leak["n_flagged"] == row["flagged"]
    assert leak["used_count_lower_bound"] == row["used_lower_bound"]
    flagged = {r.id for r in outcome.rows if r.role == "candidate" and r.used == 1}
    assert len(flagged) == row["flagged"]
    assert sum(labels[i] == 0 for i in flagged) == row["false_flags"]
    assert sum(labels[i] == 1 for i in flagged) == pytest.approx(row["tpr_at_fdr"] * 30)
    assert {r.id for r in outcome.rows if r.role == "reference"} == set(reference)
    # The bench's reference check of the drawn reference is the one the audit ran, and so is the verdict.
    check = outcome.metrics["reference_check"]
    assert check["p_value"] == pytest.approx(row["check_p"]) and check["passed"] == row["check_passed"]
    assert check["statistic"] == pytest.approx(row["check_auc"])
    assert leak["verdict"] == row["verdict"] == bench.product_verdict(row["detected"], row["check_passed"])
    text = bench.format_bench([row], 0.1, redraws=5)
    assert "tpr_at_0.1pct_fpr" in text and "mean_fdp" in text and "SAME scores" in text
    assert "blind_auc" in text and "check_p" in text and "verdict" in text


def test_null_bench_pairs_other_real_images_with_a_generated_set(tmp_path: Path) -> None:
    make_membership_set(tmp_path / "gen", n_used=20, n_unused=0, n_fresh_generated=20, size=32, seed=1)
    make_membership_set(tmp_path / "other", n_used=0, n_unused=40, n_fresh_generated=0, size=32, seed=2)
    config = AuditConfig(method="pixels", image_size=32)
    [row] = bench.run_null_bench(tmp_path / "other", [tmp_path / "gen"], ["pixels"], config, redraws=20)
    assert row["folder"] == "null:other+gen"
    assert (row["n_reference"], row["n_candidates"]) == (16, 24)
    assert row["used_candidates"] == 0 and row["false_flags"] == row["flagged"]
    assert 0.0 <= row["detect_rate"] <= 1.0 and row["t_total"] > 0
    assert "tpr_at_fdr" not in row and "mean_tpr" not in row  # undefined without used images
    assert row["check_passed"] in (True, None) and row["verdict"] in ("detected", "not_detected")
    assert "check_p" in bench.format_bench([row], 0.1, null=True, redraws=20)
    assert "e" in bench._display([{"leakage_p": 1e-12}])[0]["leakage_p"]


def test_product_verdict_is_inconclusive_only_when_the_check_fails() -> None:
    assert bench.product_verdict(True, False) == bench.product_verdict(False, False) == "inconclusive"
    assert bench.product_verdict(True, True) == bench.product_verdict(True, None) == "detected"
    assert bench.product_verdict(False, True) == "not_detected"


def _brighten_used(folder: Path, labels: dict[str, int]) -> None:
    """Redraw the split: every used real image brighter and lower in contrast (an acquisition change)."""
    for image_id, used in labels.items():
        if used:
            path = folder / "real" / f"{image_id}.png"
            img = np.asarray(Image.open(path).convert("L"), dtype=np.float64)
            Image.fromarray(np.clip(60.0 + 0.75 * img, 0, 255).astype(np.uint8)).save(path)


def test_blind_baseline_sees_a_split_drawn_differently_and_not_a_random_one(tmp_path: Path) -> None:
    config = AuditConfig(method="pixels", image_size=32, seed=0)
    random_split = tmp_path / "random"
    make_membership_set(random_split, n_used=100, n_unused=100, n_fresh_generated=20, size=32, seed=5)
    biased = tmp_path / "brighter"
    labels = make_membership_set(biased, n_used=100, n_unused=100, n_fresh_generated=20, size=32, seed=5)
    _brighten_used(biased, labels)
    rows = bench.run_bench([random_split, biased], ["pixels"], config, tmp_path / "work", redraws=0)
    by_folder = {r["folder"]: r for r in rows}
    assert abs(by_folder["random"]["blind_auc"] - 0.5) < 0.15  # 200 images: sd of a null AUC ~0.04
    assert by_folder["brighter"]["blind_auc"] > 0.9
    assert by_folder["random"]["check_passed"] is True  # the drawn reference is a random hold-out
    text = bench.format_bench(rows, 0.1, redraws=0)
    note = bench.split_bias_note(rows)
    assert note.startswith("SPLIT BIAS") and "brighter (blind_auc" in note and "random (" not in note
    assert note in text and "blind_auc" in text
    assert bench.split_bias_note([by_folder["random"]]) == ""
    assert "SPLIT BIAS" not in bench.format_bench([by_folder["random"]], 0.1, redraws=0)


def test_blind_baseline_is_nan_without_both_kinds() -> None:
    images = np.zeros((4, 8, 8), np.uint8)
    ids = ["a", "b", "c", "d"]
    assert math.isnan(bench.blind_baseline(images, ids, {"a": 1, "b": 1}))
    assert math.isnan(bench.blind_baseline(images, ids, {}))
