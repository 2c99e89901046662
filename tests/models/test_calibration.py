"""The statistics of calibrated verdicts, checked by simulation where the truth is known.

Every guarantee of models/calibration.py is measured over thousands of simulated score sets and
compared with its promise plus three Monte Carlo standard errors.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from synthaudit.models import calibration as cal

DRAWS = 3000


def _mc_margin(rate: float, draws: int) -> float:
    """Three standard errors of a Monte Carlo estimate of a probability near `rate`."""
    return 3.0 * math.sqrt(rate * (1.0 - rate) / draws)


def _mixed(rng: np.random.Generator, n_null: int, n_used: int, n_ref: int, shift: float):
    """Candidates (not-used ~ N(0,1), used ~ N(shift,1)), truth, and reference ~ N(0,1)."""
    candidates = np.r_[rng.normal(size=n_null), rng.normal(shift, 1.0, n_used)]
    truth = np.r_[np.zeros(n_null, bool), np.ones(n_used, bool)]
    return candidates, truth, rng.normal(size=n_ref)


# --- conformal p-values -------------------------------------------------------------------------


def test_p_values_count_ties_against_the_candidate() -> None:
    p = cal.conformal_p_values([5.0, 1.0, 0.0, -1.0], [1.0, 1.0, 0.0])
    assert p.tolist() == [0.25, 0.75, 1.0, 1.0]
    assert cal.conformal_p_values([9.0], np.zeros(99))[0] == pytest.approx(1 / 100)  # the smallest possible


@pytest.mark.parametrize("discrete", [False, True])
def test_null_p_values_are_super_uniform(discrete: bool) -> None:
    rng = np.random.default_rng(1)
    n_ref = 40
    draws = rng.normal(size=(DRAWS, n_ref + 1))
    if discrete:  # many ties: the conservative tie rule must keep validity
        draws = np.round(draws)
    p = np.array([cal.conformal_p_values(row[:1], row[1:])[0] for row in draws])
    for u in (0.05, 0.1, 0.25, 0.5):
        assert (p <= u).mean() <= u + _mc_margin(u, DRAWS)
    if not discrete:  # and not needlessly conservative: exact for continuous scores
        assert (p <= 0.25).mean() >= 0.25 - _mc_margin(0.25, DRAWS) - 1 / (n_ref + 1)


# --- Benjamini-Hochberg -------------------------------------------------------------------------


def test_q_values_match_the_step_up_definition() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(size=60) ** 3
    flagged, q = cal.benjamini_hochberg(p, 0.1)
    m = p.size
    sp = np.sort(p)
    naive = np.array([min(1.0, min(sp[j] * m / (j + 1) for j in range(m) if sp[j] >= pi)) for pi in p])
    assert np.allclose(q, naive)
    k = max((i + 1 for i, v in enumerate(np.sort(p)) if v <= 0.1 * (i + 1) / m), default=0)
    assert flagged.sum() == k


def test_bh_on_conformal_p_values_controls_the_fdr() -> None:
    rng = np.random.default_rng(3)
    fdr, fdps, recalls = 0.1, [], []
    for _ in range(DRAWS):
        candidates, truth, reference = _mixed(rng, n_null=150, n_used=50, n_ref=100, shift=2.5)
        flagged, _ = cal.benjamini_hochberg(cal.conformal_p_values(candidates, reference), fdr)
        fdps.append((flagged & ~truth).sum() / max(1, flagged.sum()))
        recalls.append((flagged & truth).sum() / truth.sum())
    fdps_arr = np.array(fdps)
    se = fdps_arr.std() / math.sqrt(DRAWS)
    assert fdps_arr.mean() <= fdr * 150 / 200 + 3 * se  # BH promises fdr * m0 / m
    assert np.mean(recalls) > 0.3  # and it does flag used images


def test_bh_on_a_null_set_rarely_flags_anything() -> None:
    rng = np.random.default_rng(4)
    any_flag = 0
    for _ in range(DRAWS):
        flagged, _ = cal.benjamini_hochberg(
            cal.conformal_p_values(rng.normal(size=200), rng.normal(size=100)), 0.1
        )
        any_flag += bool(flagged.any())
    assert any_flag / DRAWS <= 0.1 + _mc_margin(0.1, DRAWS)  # under the global null FDR = P(any flag)


@pytest.mark.parametrize("m,share", [(1000, 0.5), (800, 0.25), (100, 0.1)])
def test_min_reference_size_is_the_threshold_of_flagging(m: int, share: float) -> None:
    k = int(m * share)
    n = cal.min_reference_size(0.1, m, k)
    for n_ref, can_flag in ((n, True), (n - 1, False)):
        # the k used candidates beat every reference image: the best case for BH
        candidates = np.r_[np.full(k, 10.0), np.zeros(m - k)]
        flagged, _ = cal.benjamini_hochberg(cal.conformal_p_values(candidates, np.zeros(max(1, n_ref))), 0.1)
        assert bool(flagged.any()) is can_flag or n_ref < 1


# --- the leakage test ---------------------------------------------------------------------------


def test_exact_rank_test_matches_enumeration() -> None:
    c, r = np.array([3.1, 0.2, 2.5]), np.array([1.0, -0.5, 0.7, 2.0])
    pooled = np.r_[c, r]
    u_obs = cal.leakage_test(c, r).statistic
    us = []
    for idx in itertools.combinations(range(pooled.size), c.size):
        cc = pooled[list(idx)]
        rr = np.delete(pooled, list(idx))
        us.append(sum(float(a > b) for a in cc for b in rr))
    result = cal.leakage_test(c, r)
    assert result.test == "mann-whitney-exact"
    assert result.p_value == pytest.approx(np.mean(np.array(us) >= u_obs))


@pytest.mark.slow
@pytest.mark.parametrize("n_cand,n_ref,discrete", [(20, 15, False), (300, 100, False), (300, 100, True)])
def test_leakage_test_holds_its_level_under_the_null(n_cand: int, n_ref: int, discrete: bool) -> None:
    rng = np.random.default_rng(5)
    rejections = 0
    for _ in range(DRAWS):
        c, r = rng.normal(size=n_cand), rng.normal(size=n_ref)
        if discrete:
            c, r = np.round(c * 2), np.round(r * 2)
        rejections += cal.leakage_test(c, r, level=0.05).detected
    assert rejections / DRAWS <= 0.05 + _mc_margin(0.05, DRAWS)


def test_leakage_test_detects_a_weak_leak_that_per_image_tests_miss() -> None:
    rng = np.random.default_rng(6)
    candidates, truth, reference = _mixed(rng, n_null=500, n_used=500, n_ref=500, shift=0.6)
    test = cal.leakage_test(candidates, reference)
    flagged, _ = cal.benjamini_hochberg(cal.conformal_p_values(candidates, reference), 0.1)
    assert test.detected and test.p_value < 1e-3
    assert flagged.sum() < 0.1 * truth.sum()


def test_leakage_test_says_nothing_when_all_scores_are_equal() -> None:
    assert cal.leakage_test(np.ones(100), np.ones(80)).p_value == 1.0


# --- the lower bound on the used count -----------------------------------------------------------


def _coverage_failures(rng: np.random.Generator, make, draws: int) -> float:
    failures = 0
    for _ in range(draws):
        candidates, truth, reference = make(rng)
        failures += cal.used_count_lower_bound(candidates, reference, 0.95) > int(truth.sum())
    return failures / draws


SCENARIOS = {
    "null": lambda rng: _mixed(rng, 200, 0, 120, 0.0),
    "strong leak": lambda rng: _mixed(rng, 150, 50, 120, 3.0),
    "weak leak": lambda rng: _mixed(rng, 100, 100, 120, 0.5),
    "used look unused": lambda rng: _mixed(rng, 100, 100, 120, 0.0),
    "used score lower": lambda rng: _mixed(rng, 100, 100, 120, -2.0),
    "few references": lambda rng: _mixed(rng, 180, 20, 15, 2.0),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_lower_bound_covers_the_true_count(scenario: str) -> None:
    rate = _coverage_failures(np.random.default_rng(7), SCENARIOS[scenario], 2000)
    assert rate <= 0.05 + _mc_margin(0.05, 2000)


def test_lower_bound_is_informative_on_a_strong_leak() -> None:
    rng = np.random.default_rng(8)
    candidates, truth, reference = _mixed(rng, 300, 500, 200, 4.0)
    bound = cal.used_count_lower_bound(candidates, reference)
    assert 0.6 * truth.sum() <= bound <= truth.sum()
    assert cal.used_count_lower_bound(rng.normal(size=500), rng.normal(size=200)) <= 20


def test_storey_estimate_is_near_the_true_share() -> None:
    rng = np.random.default_rng(9)
    candidates, truth, reference = _mixed(rng, 6000, 4000, 4000, 5.0)
    estimate = cal.storey_used_share(cal.conformal_p_values(candidates, reference))
    assert estimate == pytest.approx(truth.mean(), abs=0.05)


def test_calibrate_reports_every_figure() -> None:
    rng = np.random.default_rng(10)
    candidates, _truth, reference = _mixed(rng, 300, 100, 200, 3.0)
    result = cal.calibrate(candidates, reference, fdr=0.1)
    leak = result.leakage
    assert leak["detected"] and leak["n_candidates"] == 400 and leak["n_reference"] == 200
    assert leak["n_flagged"] == int(result.flagged.sum()) > 0
    assert leak["used_share_ci"][0] == pytest.approx(leak["used_count_lower_bound"] / 400)
    assert leak["min_p_value"] == pytest.approx(1 / 201)
    assert np.all((result.q_values >= result.p_values) & (result.q_values <= 1.0))


@pytest.mark.parametrize("bad", [{"fdr": 0.0}, {"fdr": 1.0}])
def test_calibrate_refuses_impossible_targets(bad: dict) -> None:
    with pytest.raises(ValueError):
        cal.calibrate([1.0, 2.0], [0.0], **bad)
    with pytest.raises(ValueError):
        cal.conformal_p_values([1.0], [])


def test_bh_flags_at_the_exact_boundary() -> None:
    flagged, _q = cal.benjamini_hochberg([1 / 20, 1 / 20, 1 / 20, 0.9, 0.9, 0.9], 0.1)  # 1/20 * 6/3 = 0.1
    assert flagged.tolist() == [True, True, True, False, False, False]
