"""The alignment-tolerant search of the default and its label-free gate (models/alignment.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from synthetic_sets import make_misaligned_set

from synthaudit.models.alignment import (
    GATE_SHARE,
    distance_ratios,
    fine_versions,
    gate,
    merge_versions,
    versions,
    warp,
)
from synthaudit.models.config import AuditConfig
from synthaudit.models.metrics import roc_auc, tpr_at_fpr
from synthaudit.models.report import render_report
from synthaudit.models.stages import AuditInputs, _load_npz, run_audit, run_stage

CONFIG = AuditConfig(image_size=16, batch_size=64)


def _audit(root: Path, work: Path, alignment: str) -> tuple[np.ndarray, dict]:
    labels = dict(line.split(",") for line in (root / "labels.csv").read_text().split()[1:])
    config = AuditConfig(**{**CONFIG.to_dict(), "alignment": alignment})
    outcome = run_audit(AuditInputs(root / "real", root / "generated"), config, work)
    y = np.array([int(labels[r.id]) for r in outcome.rows])
    return np.c_[y, [r.score for r in outcome.rows]], json.loads((work / "alignment.json").read_text())


def test_transformed_copies_are_caught_at_low_fpr_only_with_the_gate(tmp_path: Path) -> None:
    root = tmp_path / "set"
    make_misaligned_set(root)  # shifted by one thumbnail pixel, rotated by 4.5 degrees, scaled by 4.5 %
    off, off_record = _audit(root, tmp_path / "off", "off")
    auto, record = _audit(root, tmp_path / "auto", "auto")
    assert off_record["setting"] == "off" and off_record["views"] == {}
    view = record["views"]["pixels_whitened-cosine"]
    assert view["fired"] and view["share"] > GATE_SHARE
    tpr_off, tpr_auto = tpr_at_fpr(off[:, 0], off[:, 1]), tpr_at_fpr(auto[:, 0], auto[:, 1])
    assert tpr_off < 0.7 and tpr_auto >= 0.95 and tpr_auto >= tpr_off + 0.3
    assert roc_auc(auto[:, 0], auto[:, 1]) > roc_auc(off[:, 0], off[:, 1])
    metrics = json.loads((tmp_path / "auto" / "metrics.json").read_text())
    assert metrics["alignment"] == record  # the decide summary carries what the search recorded
    assert "alignment search</th><td>on: 50.0% of the generated images" in render_report(tmp_path / "auto")
    assert "switched off (alignment: off)" in render_report(tmp_path / "off")


def test_copies_moved_twice_as_far_open_the_probe_not_the_gate(tmp_path: Path) -> None:
    root = tmp_path / "set"
    make_misaligned_set(root, copies="far")  # 2-pixel shifts, 9.5 degrees, 9.5 % scale
    off, _ = _audit(root, tmp_path / "off", "off")
    auto, record = _audit(root, tmp_path / "auto", "auto")
    view = record["views"]["pixels_whitened-cosine"]
    assert not view["fired"] and view["share"] <= GATE_SHARE  # the gate's versions do not halve them
    assert view["probe_fired"] and view["probe_share"] > GATE_SHARE and view["versions"] == 33
    tpr_off, tpr_auto = tpr_at_fpr(off[:, 0], off[:, 1]), tpr_at_fpr(auto[:, 0], auto[:, 1])
    assert tpr_auto >= 0.9 and tpr_auto >= tpr_off + 0.3
    assert "alignment search</th><td>on, wider:" in render_report(tmp_path / "auto")


@pytest.mark.parametrize("copies", ["exact", "none"])
def test_the_gate_stays_off_on_exact_copies_and_without_copies(tmp_path: Path, copies: str) -> None:
    root = tmp_path / "set"
    make_misaligned_set(root, copies=copies)
    off, _ = _audit(root, tmp_path / "off", "off")
    _, record = _audit(root, tmp_path / "grid", "grid")
    assert record["views"]["pixels_whitened-cosine"] == {
        "share": 0.0,
        "fired": False,
        "probe_share": 0.0,
        "probe_fired": False,
        "versions": 1,
    }
    assert "alignment search</th><td>not used: 0.0% of the generated" in render_report(tmp_path / "grid")
    for artifact in ("features.npz", "neighbours.npz", "scores.npz"):
        got, want = _load_npz(tmp_path / "grid" / artifact), _load_npz(tmp_path / "off" / artifact)
        assert sorted(got) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{artifact}:{key}")
    assert (tmp_path / "grid" / "results.csv").read_bytes() == (tmp_path / "off" / "results.csv").read_bytes()
    # "auto" adds the registration: nothing to lift without copies (the same CSV, bit for bit); exact
    # copies are lifted, and they stay the highest-scoring images
    auto, auto_record = _audit(root, tmp_path / "auto", "auto")
    if copies == "none":
        assert auto_record["registration"]["strong"] == 0
        assert (tmp_path / "auto" / "results.csv").read_bytes() == (
            tmp_path / "off" / "results.csv"
        ).read_bytes()
    else:
        n_used = int(auto[:, 0].sum())
        assert auto_record["registration"]["strong"] >= n_used // 2
        assert (
            auto[np.argsort(-auto[:, 1])[:n_used], 0].all() and off[np.argsort(-off[:, 1])[:n_used], 0].all()
        )


def test_merge_versions_is_the_top_k_of_the_max_over_versions() -> None:
    rng = np.random.default_rng(1)
    sims = rng.normal(size=(4, 7, 30)).astype(np.float32)  # [versions, queries, base]
    k = 5
    parts = []
    for v in sims:
        idx = np.argsort(-v, axis=1, kind="stable")[:, :k]
        parts.append((np.take_along_axis(v, idx, 1), idx))
    got_sims, got_idx = merge_versions(parts, k)
    best = sims.max(axis=0)
    want_idx = np.argsort(-best, axis=1, kind="stable")[:, :k]
    np.testing.assert_array_equal(got_idx, want_idx)
    np.testing.assert_array_equal(got_sims, np.take_along_axis(best, want_idx, 1))
    # an excluded index per row (the query itself) never comes back
    _, idx = merge_versions([(p[0], p[1]) for p in parts], k, exclude=want_idx[:, 0])
    assert not (idx == want_idx[:, :1]).any()


def test_the_gate_statistic() -> None:
    # exact copies: distance 0 in both views counts as ratio 1, not 0
    assert distance_ratios(np.array([1.0]), np.array([1.0]))[0] == pytest.approx(1.0)
    halved = 0.875  # d = sqrt(2 - 2 s): d = 1 at s = 0.5, d = 0.5 at s = 0.875
    share, fired = gate(np.full(100, 0.5), np.r_[np.full(2, halved + 1e-6), np.full(98, 0.5)])
    assert share == pytest.approx(0.02) and fired
    share, fired = gate(np.full(100, 0.5), np.r_[np.full(1, halved + 1e-6), np.full(99, 0.5)])
    assert share == pytest.approx(0.01) and not fired  # more than 1 %, not 1 %
    assert gate(np.zeros(0), np.zeros(0)) == (0.0, False)


def test_versions_and_warp() -> None:
    v = versions(64, 32)
    assert len(v) == 9 and v[0] == (0.0, 0.0, 0.0, 1.0)
    assert {x[0] for x in v} == {-2.0, 0.0, 2.0}  # one thumbnail pixel = 2 image pixels at 64 px
    fine = fine_versions(64, 32)  # the half-pixel grid within one thumbnail pixel, less the gate's shifts
    assert len(fine) == 20 and not set(fine) & set(v)
    assert {(dx, dy) for dx, dy, _, _ in fine} | {(dx, dy) for dx, dy, _, _ in v} == {
        (float(i), float(j)) for i in (-2, -1, 0, 1, 2) for j in (-2, -1, 0, 1, 2)
    }
    assert all(angle == 0.0 and zoom == 1.0 for _, _, angle, zoom in fine)
    img = np.arange(256, dtype=np.uint8).reshape(16, 16)
    np.testing.assert_array_equal(warp(img[None], *v[0])[0], img)
    shifted = warp(img[None], 1.0, 0.0, 0.0, 1.0)[0]
    np.testing.assert_array_equal(shifted[:, 1:], img[:, :-1])


def test_alignment_is_a_config_field_and_old_work_folders_resume(tmp_path: Path) -> None:
    assert AuditConfig().alignment == "auto"
    with pytest.raises(ValueError, match="alignment"):
        AuditConfig(alignment="on")
    root = tmp_path / "set"
    make_misaligned_set(root, n_used=4, n_unused=4, n_fresh_generated=4)
    inputs, work = AuditInputs(root / "real", root / "generated"), tmp_path / "w"
    run_stage("decode", work, inputs, CONFIG)
    pinned = json.loads((work / "config.json").read_text())
    pinned.pop("alignment")  # a folder pinned before the field existed
    (work / "config.json").write_text(json.dumps(pinned))
    run_stage("pretrain", work, inputs, CONFIG)  # same config: resumes
    with pytest.raises(ValueError, match="another configuration"):
        run_stage("pretrain", work, inputs, AuditConfig(**{**CONFIG.to_dict(), "alignment": "off"}))
