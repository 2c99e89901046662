"""Calibrated verdicts: membership scores tested against the scores of images known not to be used.

Every function here assumes the same thing, stated once: the *reference* scores (images known not to
be in the training set) and the scores of the *not-used candidates* are exchangeable, i.e. drawn like
one another. A random hold-out put aside before the generator was trained satisfies this; images from
another scanner, site or period do not, and then no guarantee below holds. Nothing is assumed about
the used candidates: they may score anywhere. Higher score = more likely used.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_FDR = 0.1
DEFAULT_LEVEL = 0.05
DEFAULT_CONFIDENCE = 0.95
STOREY_LAMBDA = 0.5
EXACT_RANK_TEST_MAX_N = 50  # pooled size up to which the rank test is exact (when there are no ties)


def _finite_1d(values: object, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=np.float64).reshape(-1)
    if not np.isfinite(x).all():
        raise ValueError(f"{name} must be finite")
    return x


def conformal_p_values(candidate_scores: object, reference_scores: object) -> np.ndarray:
    """p_i = (1 + #{reference >= s_i}) / (n_ref + 1) for each candidate score s_i.

    Null hypothesis for candidate i: it is not used, so its score is exchangeable with the reference
    scores. Then P(p_i <= u) <= u for every u (ties count against the candidate: conservative). The
    smallest possible p-value is 1 / (n_ref + 1): see `min_reference_size` for what a target FDR needs.
    The p-values of several candidates share the reference and are positively dependent (PRDS), which
    is what Benjamini-Hochberg needs (Bates et al., 2023, "Testing for outliers with conformal p-values").
    """
    c = _finite_1d(candidate_scores, "candidate scores")
    r = np.sort(_finite_1d(reference_scores, "reference scores"))
    if r.size == 0:
        raise ValueError("conformal p-values need at least one reference score")
    at_least = r.size - np.searchsorted(r, c, side="left")  # #{r >= c}
    return (1.0 + at_least) / (r.size + 1.0)


def min_reference_size(fdr: float, n_candidates: int, n_flaggable: int = 1) -> int:
    """Fewest reference images with which Benjamini-Hochberg at `fdr` can flag `n_flaggable` of
    `n_candidates` candidates at all: it needs 1/(n_ref+1) <= fdr * n_flaggable / n_candidates.

    Example: 1,000 candidates of which half may be used, FDR 0.1: at least 19 reference images; to be
    able to flag a single image among 1,000: 9,999. More reference images always give more power.
    """
    if not 0.0 < fdr < 1.0 or n_candidates < 1 or not 1 <= n_flaggable <= n_candidates:
        raise ValueError("need 0 < fdr < 1 and 1 <= n_flaggable <= n_candidates")
    return max(1, math.ceil(n_candidates / (fdr * n_flaggable) - 1.0 - 1e-9))


def benjamini_hochberg(p_values: object, fdr: float = DEFAULT_FDR) -> tuple[np.ndarray, np.ndarray]:
    """(flagged, q_values): the Benjamini-Hochberg step-up rule at target false discovery rate `fdr`.

    q_i is the smallest FDR at which candidate i would be flagged (the BH-adjusted p-value); flagged
    is q <= fdr. The expected share of false flags among the flagged is at most fdr * m0/m when the
    p-values are valid and independent or PRDS (conformal p-values are PRDS).
    """
    if not 0.0 < fdr < 1.0:
        raise ValueError(f"fdr must lie strictly between 0 and 1, got {fdr}")
    p = _finite_1d(p_values, "p-values")
    m = p.size
    if m == 0:
        return np.zeros(0, dtype=bool), np.zeros(0)
    order = np.argsort(p, kind="mergesort")
    ranked = p[order] * m / np.arange(1, m + 1)
    adjusted = np.minimum.accumulate(ranked[::-1])[::-1]
    q = np.empty(m)
    q[order] = np.minimum(adjusted, 1.0)
    return q <= fdr * (1.0 + 1e-12), q  # p*m/k is computed in floating point: keep exact boundaries


@dataclass(frozen=True)
class RankTest:
    """Result of `leakage_test`."""

    statistic: float  # Mann-Whitney U of the candidates (pairs candidate > reference, ties 1/2)
    p_value: float
    detected: bool
    level: float
    test: str


def _normal_sf(z: float) -> float:
    return 0.5 * math.erfc(z / math.sqrt(2.0))


def _exact_u_sf(u: float, m: int, n: int) -> float:
    """P(U >= u) under exchangeability, by counting rank arrangements (no ties)."""
    # counts[i][j] = distribution of U for i candidates and j references, built row by row.
    size = m * n + 1
    prev = [np.zeros(size) for _ in range(n + 1)]
    for j in range(n + 1):
        prev[j][0] = 1.0  # zero candidates: U = 0
    for _i in range(1, m + 1):
        cur = [np.zeros(size) for _ in range(n + 1)]
        cur[0][0] = 1.0  # zero references: U = 0
        for j in range(1, n + 1):
            # the largest value is a candidate (beats all j references) or a reference.
            shifted = np.zeros(size)
            shifted[j:] = prev[j][: size - j]
            cur[j] = shifted + cur[j - 1]
        prev = cur
    counts = prev[n]
    k = int(math.ceil(u - 1e-9))
    return float(counts[k:].sum() / counts.sum())


def leakage_test(
    candidate_scores: object, reference_scores: object, level: float = DEFAULT_LEVEL
) -> RankTest:
    """One-sided Mann-Whitney (Wilcoxon rank-sum) test of the whole candidate set against the reference.

    Null: no candidate is used, so all candidate and reference scores are exchangeable. Alternative:
    candidate scores are stochastically larger (some candidates were used). Exact permutation p-value
    when the pooled set has at most 50 scores and no ties; otherwise the normal approximation with
    the tie correction of the variance and a continuity correction. `detected` is p <= level.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    c = _finite_1d(candidate_scores, "candidate scores")
    r = _finite_1d(reference_scores, "reference scores")
    m, n = c.size, r.size
    if m == 0 or n == 0:
        raise ValueError("the leakage test needs candidate and reference scores")
    pooled = np.concatenate([c, r])
    values, inverse, tie_counts = np.unique(pooled, return_inverse=True, return_counts=True)
    ends = np.cumsum(tie_counts)
    mid_ranks = ends - (tie_counts - 1) / 2.0  # 1-based average ranks
    ranks = mid_ranks[inverse]
    u = float(ranks[:m].sum() - m * (m + 1) / 2.0)
    total = m + n
    if total <= EXACT_RANK_TEST_MAX_N and values.size == total:
        p, test = _exact_u_sf(u, m, n), "mann-whitney-exact"
    else:
        ties = float(((tie_counts.astype(np.float64) ** 3) - tie_counts).sum())
        var = m * n / 12.0 * ((total + 1) - ties / (total * (total - 1)))
        if var <= 0.0:  # every score equal: no evidence either way
            p = 1.0
        else:
            z = (u - m * n / 2.0 - 0.5) / math.sqrt(var)
            p = min(1.0, _normal_sf(z))
        test = "mann-whitney-normal"
    return RankTest(statistic=u, p_value=p, detected=bool(p <= level), level=level, test=test)


def _upper_hull(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The points of (x, y) that can maximise y - a*x for some a >= 0 (upper-left convex hull)."""
    order = np.lexsort((-y, x))
    hull_x: list[float] = []
    hull_y: list[float] = []
    for xi, yi in zip(x[order].tolist(), y[order].tolist(), strict=True):
        if hull_y and yi <= hull_y[-1]:
            continue  # dominated: larger x and no larger y
        while len(hull_x) >= 2:
            (x1, y1), (x2, y2) = (hull_x[-2], hull_y[-2]), (hull_x[-1], hull_y[-1])
            if (y2 - y1) * (xi - x1) <= (yi - y1) * (x2 - x1):
                hull_x.pop()
                hull_y.pop()
            else:
                break
        hull_x.append(xi)
        hull_y.append(yi)
    return np.array(hull_x), np.array(hull_y)


def used_count_lower_bound(
    candidate_scores: object, reference_scores: object, confidence: float = DEFAULT_CONFIDENCE
) -> int:
    """A lower confidence bound L on the number of used candidates: P(L <= true count) >= confidence.

    Assumptions: the reference scores and the not-used candidates' scores are independent draws from
    one distribution F; the used candidates' scores are arbitrary (no assumption on the alternative).
    Method (DKW type): with A(t) candidates scoring >= t and S(t) = P_F(score >= t), the one-sided
    DKW-Massart inequality bounds, simultaneously for all t and each with probability 1 - alpha/2,
    S(t) <= S_ref(t) + e_ref and #{not-used candidates >= t} <= N0 * (S(t) + e_0), where
    e = sqrt(log(2/alpha) / (2 n)). A count N1 of used candidates (N0 = m - N1) is kept when
    A(t) - N1 <= N0 * min(1, S_ref(t) + e_ref) + sqrt(N0 * log(2/alpha) / 2) for every t; L is the
    smallest kept N1. The true N1 is kept with probability >= confidence, so L <= N1 then.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie strictly between 0 and 1, got {confidence}")
    c = _finite_1d(candidate_scores, "candidate scores")
    r = np.sort(_finite_1d(reference_scores, "reference scores"))
    m, n = c.size, r.size
    if m == 0 or n == 0:
        raise ValueError("the bound needs candidate and reference scores")
    log_term = math.log(2.0 / (1.0 - confidence))
    e_ref = math.sqrt(log_term / (2.0 * n))
    thresholds = np.unique(c)
    above = m - np.searchsorted(np.sort(c), thresholds, side="left")  # A(t) = #{c >= t}
    ref_share = (n - np.searchsorted(r, thresholds, side="left")) / n  # S_ref(t)
    slope = np.minimum(1.0, ref_share + e_ref)
    hull_slope, hull_above = _upper_hull(slope, above.astype(np.float64))
    n1 = np.arange(m + 1, dtype=np.float64)
    n0 = m - n1
    worst = np.full(m + 1, -math.inf)
    for start in range(0, hull_slope.size, 256):  # max_t A(t) - N0 * slope(t), for every N0
        block = hull_above[start : start + 256, None] - hull_slope[start : start + 256, None] * n0[None, :]
        worst = np.maximum(worst, block.max(axis=0))
    kept = worst - n1 <= np.sqrt(n0 * log_term / 2.0) + 1e-9
    return int(np.flatnonzero(kept)[0]) if kept.any() else m


def storey_used_share(p_values: object, lam: float = STOREY_LAMBDA) -> float:
    """Point estimate of the share of used candidates: 1 - pi0, with Storey's
    pi0 = #{p > lam} / (m (1 - lam)) (valid p-values of not-used candidates are uniform above lam;
    used ones mostly fall below it). Clipped to [0, 1]. An estimate, not a bound."""
    p = _finite_1d(p_values, "p-values")
    if p.size == 0:
        raise ValueError("no p-values given")
    pi0 = float((p > lam).sum()) / (p.size * (1.0 - lam))
    return float(min(1.0, max(0.0, 1.0 - pi0)))


@dataclass(frozen=True)
class Calibration:
    """Everything a calibrated audit reports about its candidates."""

    p_values: np.ndarray
    q_values: np.ndarray
    flagged: np.ndarray  # bool, BH at fdr
    leakage: dict[str, Any]


def calibrate(
    candidate_scores: object,
    reference_scores: object,
    fdr: float = DEFAULT_FDR,
    level: float = DEFAULT_LEVEL,
    confidence: float = DEFAULT_CONFIDENCE,
) -> Calibration:
    """p-values, BH decisions at `fdr`, the set-level leakage test and the bound on the used count."""
    c = _finite_1d(candidate_scores, "candidate scores")
    r = _finite_1d(reference_scores, "reference scores")
    p = conformal_p_values(c, r)
    flagged, q = benjamini_hochberg(p, fdr)
    test = leakage_test(c, r, level)
    lower = used_count_lower_bound(c, r, confidence)
    leakage = {
        **{k: v for k, v in asdict(test).items() if k != "statistic"},
        "statistic": test.statistic,
        "n_candidates": int(c.size),
        "n_reference": int(r.size),
        "n_flagged": int(flagged.sum()),
        "fdr": fdr,
        "confidence": confidence,
        "used_count_lower_bound": lower,
        "used_share_estimate": storey_used_share(p),
        "used_share_ci": [lower / c.size, 1.0],
        "min_p_value": 1.0 / (r.size + 1.0),
    }
    return Calibration(p_values=p, q_values=q, flagged=flagged, leakage=leakage)
