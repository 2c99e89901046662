"""The reference check (models/reference_check.py): its false-alarm rate by simulation on exchangeable
splits, independent and clustered, and its power on a reference drawn unlike the candidates."""

from __future__ import annotations

import math

import numpy as np

from synthaudit.models import reference_check as rc
from synthaudit.models.stages.decide import leakage_verdict

SIMS = 200
LEVEL = 0.05


def _limit(level: float, sims: int) -> float:
    return level + 3.0 * math.sqrt(level * (1 - level) / sims)


def test_split_test_holds_its_level_on_independent_exchangeable_splits() -> None:
    rng = np.random.default_rng(0)
    n, rejections = 400, 0
    for seed in range(SIMS):
        x = rng.normal(size=(n, 12))
        ref = np.zeros(n, dtype=bool)
        ref[rng.choice(n, 160, replace=False)] = True
        _, p = rc.split_test(x, ref, np.arange(n), seed=seed)
        rejections += p <= LEVEL
    assert rejections / SIMS <= _limit(LEVEL, SIMS)


def test_split_test_holds_its_level_when_whole_clusters_are_reference_or_candidate() -> None:
    """Slices of one volume share a random effect; the reference holds whole volumes. A test that
    counted images as independent would fire far above its level here."""
    rng = np.random.default_rng(1)
    volumes, per, rejections, naive = 60, 12, 0, 0
    units = np.repeat(np.arange(volumes), per)
    for seed in range(SIMS):
        x = rng.normal(size=(volumes, 6))[units] + 0.3 * rng.normal(size=(volumes * per, 6))
        ref_volumes = rng.choice(volumes, 24, replace=False)
        ref = np.isin(units, ref_volumes)
        _, p = rc.split_test(x, ref, units, seed=seed)
        rejections += p <= LEVEL
        _, p_naive = rc.split_test(x, ref, np.arange(units.size), seed=seed)
        naive += p_naive <= LEVEL
    assert rejections / SIMS <= _limit(LEVEL, SIMS)
    assert naive / SIMS > 2 * _limit(LEVEL, SIMS)  # the control: ignoring the clusters breaks the level


def test_split_test_has_power_on_a_shifted_reference() -> None:
    rng = np.random.default_rng(2)
    n = 400
    x = rng.normal(size=(n, 12))
    ref = np.zeros(n, dtype=bool)
    ref[:160] = True
    x[ref, 0] += 1.2
    auc, p = rc.split_test(x, ref, np.arange(n))
    assert auc > 0.6 and p < 1e-4


def _images(rng: np.random.Generator, n: int) -> np.ndarray:
    """Distinct smooth blobs (no two near-duplicates), 32 px."""
    yy, xx = np.mgrid[0:32, 0:32] / 31.0
    out = np.empty((n, 32, 32))
    for i in range(n):
        cx, cy, s = rng.uniform(0.2, 0.8), rng.uniform(0.2, 0.8), rng.uniform(0.08, 0.3)
        out[i] = np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s**2)) * rng.uniform(0.5, 1.0)
        out[i] += 0.05 * rng.normal(size=(32, 32))
    return np.clip(out, 0, 1)


def test_check_reference_passes_a_random_split_and_fails_a_scanner_change() -> None:
    rng = np.random.default_rng(3)
    x = _images(rng, 300)
    ref = np.zeros(300, dtype=bool)
    ref[rng.choice(300, 120, replace=False)] = True
    same, blind = rc.check_reference((x * 255).astype(np.uint8), ref)
    assert same.passed is True and blind is not None and blind.shape == (300,)
    shifted = x.copy()
    shifted[ref] = np.clip(shifted[ref] ** 1.4 + 0.03 * rng.normal(size=shifted[ref].shape), 0, 1)
    other, _ = rc.check_reference((shifted * 255).astype(np.uint8), ref)
    assert other.passed is False and other.p_value is not None and other.p_value < 1e-3
    assert "differ" in other.message


def test_near_duplicates_form_one_unit_and_too_few_units_cannot_be_checked() -> None:
    rng = np.random.default_rng(4)
    base = (_images(rng, 1) * 255).astype(np.uint8)
    copies = np.repeat(base, 20, axis=0)
    units, _ = rc.check_units(copies)
    assert int(units.max()) + 1 == 1
    ref = np.zeros(20, dtype=bool)
    ref[:8] = True
    result, blind = rc.check_reference(copies, ref)
    assert result.passed is None and blind is None and "could not be made" in result.message


def test_a_failed_check_makes_the_verdict_inconclusive_with_no_finding() -> None:
    leakage = {
        "p_value": 1e-9,
        "detected": True,
        "statistic": 5.0,
        "n_candidates": 100,
        "n_reference": 50,
        "n_flagged": 30,
        "fdr": 0.1,
        "used_count_lower_bound": 20,
        "used_share_estimate": 0.3,
        "used_share_ci": [0.2, 1.0],
    }
    failed = leakage_verdict(leakage, {"passed": False})
    assert failed["verdict"] == "inconclusive" and failed["detected"] is None
    assert all(failed[k] is None for k in ("p_value", "n_flagged", "used_count_lower_bound"))
    assert leakage_verdict(leakage, {"passed": True})["verdict"] == "detected"
    small = leakage_verdict({**leakage, "n_reference": 3}, None)
    assert small["reference_too_small"] is True and small["min_reference_size"] == 9
