"""Turn membership scores into used / not-used decisions (score >= threshold -> used), and measure them."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from synthaudit.models import metrics
from synthaudit.models.config import AuditConfig

CV_FOLDS = 5


def _as_scores(scores: object) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.size == 0:
        raise ValueError("no scores given")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return s


def _as_labels(labels: object, n: int) -> np.ndarray:
    y = np.asarray(labels).reshape(-1)
    if y.size != n:
        raise ValueError(f"labels has {y.size} values, scores has {n}")
    if not np.isin(y, (0, 1)).all():
        raise ValueError("labels must contain only 0 and 1")
    return y.astype(np.int64)


def just_above(value: float) -> float:
    """The smallest float strictly greater than value (a threshold that selects nothing)."""
    return float(np.nextafter(value, math.inf))


def apply_threshold(scores: object, threshold: float) -> np.ndarray:
    """1 (used) where score >= threshold, else 0, as int8."""
    return (np.asarray(scores, dtype=np.float64) >= threshold).astype(np.int8)


def f1_optimal_threshold(scores: object, labels: object) -> float:
    """Threshold maximising F1 on labelled scores, searched over midpoints between distinct
    scores (plus 'everything' and 'nothing'); ties go to the higher threshold."""
    s = _as_scores(scores)
    y = _as_labels(labels, s.size)
    order = np.argsort(-s, kind="mergesort")
    ss, yy = s[order], y[order]
    last = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), ss.size - 1]
    tp = np.cumsum(yy)[last]
    predicted = last + 1
    f1 = 2.0 * tp / (predicted + int(y.sum()))
    upper = ss[last]
    lower = ss[np.minimum(last + 1, ss.size - 1)]
    mid = (upper + lower) / 2.0
    thresholds = np.where(last < ss.size - 1, np.where(mid > lower, mid, upper), ss[-1])
    thresholds = np.r_[just_above(ss[0]), thresholds]
    f1 = np.r_[0.0, f1]
    return float(thresholds[int(np.argmax(f1))])


def prior_threshold(scores: object, used_fraction: float = 0.5) -> float:
    """Threshold such that round(used_fraction * N) images score >= it (absent ties)."""
    if not 0.0 <= used_fraction <= 1.0:
        raise ValueError(f"used_fraction must be in [0, 1], got {used_fraction}")
    desc = np.sort(_as_scores(scores))[::-1]
    k = int(math.floor(used_fraction * desc.size + 0.5))
    if k == 0:
        return just_above(desc[0])
    return float(desc[k - 1])


def _log_normal(x: np.ndarray, mean: float, var: float) -> np.ndarray:
    return -0.5 * (np.log(2.0 * math.pi * var) + (x - mean) ** 2 / var)


def _fit_two_gaussians(
    x: np.ndarray, seed: int, iters: int = 500, tol: float = 1e-9
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """EM for a 1-D two-component Gaussian mixture -> (weights, means, variances)."""
    rng = np.random.default_rng(seed)
    total_var = float(x.var())
    floor = max(total_var * 1e-6, 1e-12)
    means = np.quantile(x, [0.25, 0.75]) + rng.normal(0.0, 1e-3 * math.sqrt(total_var), 2)
    variances = np.full(2, total_var / 4.0 + floor)
    weights = np.array([0.5, 0.5])
    previous = -math.inf
    for _ in range(iters):
        log_p = np.stack([np.log(weights[j]) + _log_normal(x, means[j], variances[j]) for j in (0, 1)])
        log_total = np.logaddexp(log_p[0], log_p[1])
        resp = np.exp(log_p - log_total)
        nk = resp.sum(axis=1)
        if (nk < 1e-9).any():
            break
        weights = nk / x.size
        means = (resp @ x) / nk
        variances = np.maximum((resp * (x - means[:, None]) ** 2).sum(axis=1) / nk, floor)
        likelihood = float(log_total.sum())
        if likelihood - previous < tol * abs(likelihood):
            break
        previous = likelihood
    return weights, means, variances


def _posterior_crossing(weights: np.ndarray, means: np.ndarray, variances: np.ndarray) -> float | None:
    """Point between the means where both components are equally likely (bisection), or None."""
    lo_c, hi_c = (0, 1) if means[0] <= means[1] else (1, 0)

    def log_odds(v: float) -> float:
        x = np.array([v])
        hi = math.log(weights[hi_c]) + _log_normal(x, means[hi_c], variances[hi_c])[0]
        lo = math.log(weights[lo_c]) + _log_normal(x, means[lo_c], variances[lo_c])[0]
        return float(hi - lo)

    a, b = float(means[lo_c]), float(means[hi_c])
    fa, fb = log_odds(a), log_odds(b)
    if not (a < b and fa < 0.0 < fb):
        return None
    for _ in range(200):
        m = (a + b) / 2.0
        if m in (a, b):
            break
        if log_odds(m) < 0.0:
            a = m
        else:
            b = m
    return (a + b) / 2.0


def mixture_threshold(scores: object, seed: int = 0) -> float:
    """Threshold where a fitted two-Gaussian mixture gives the higher-mean component posterior 0.5;
    the median when the fit is degenerate."""
    x = _as_scores(scores)
    median = float(np.median(x))
    if x.size < 4 or float(x.std()) == 0.0:
        return median
    weights, means, variances = _fit_two_gaussians(x, seed)
    params_ok = np.isfinite(np.r_[weights, means, variances]).all() and (weights > 1e-6).all()
    if not params_ok or abs(means[1] - means[0]) < 1e-12 * max(1.0, abs(median)):
        return median
    crossing = _posterior_crossing(weights, means, variances)
    return median if crossing is None else float(crossing)


def _stratified_folds(labels: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """Fold id per item: each class shuffled, then all items dealt round-robin."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in (0, 1)])
    fold_of = np.empty(labels.size, dtype=np.int64)
    fold_of[order] = np.arange(labels.size) % folds
    return fold_of


def cross_validated_decisions(
    scores: object, labels: object, folds: int = 5, seed: int = 0
) -> tuple[np.ndarray, list[float]]:
    """Decide each labelled item with an F1-optimal threshold fitted on the other folds only.

    Returns int8 decisions (same order as scores) and the threshold of each fold.
    """
    s = _as_scores(scores)
    y = _as_labels(labels, s.size)
    if s.size < 2:
        raise ValueError("cross-validation needs at least 2 labelled items")
    k = max(2, min(int(folds), s.size))
    fold_of = _stratified_folds(y, k, seed)
    decisions = np.zeros(s.size, dtype=np.int8)
    thresholds: list[float] = []
    for f in range(k):
        test = fold_of == f
        threshold = f1_optimal_threshold(s[~test], y[~test])
        decisions[test] = apply_threshold(s[test], threshold)
        thresholds.append(threshold)
    return decisions, thresholds


# --- the audit's rules: choose a threshold, measure against labels ------------------------------------


def choose_threshold(
    scores: np.ndarray, labelled: np.ndarray, labels: np.ndarray, config: AuditConfig
) -> tuple[float, str]:
    """The decision threshold and the rule that produced it (every rule but "fdr", see run_decide)."""
    rule = config.decision
    if rule == "auto":
        rule = "calibrated" if len(labels) and len(set(labels.tolist())) == 2 else "prior"
    if rule == "calibrated":
        if len(set(labels.tolist())) < 2:
            raise ValueError("calibration needs labels with both used (1) and not used (0) images")
        return f1_optimal_threshold(scores[labelled], labels), rule
    if rule == "mixture":
        return mixture_threshold(scores, seed=config.seed), rule
    if rule == "fixed":
        assert config.threshold is not None
        return float(config.threshold), rule
    return prior_threshold(scores, config.used_fraction), "prior"


def label_metrics(
    scores: np.ndarray, decisions: np.ndarray, labelled: np.ndarray, labels: np.ndarray, config: AuditConfig
) -> dict[str, Any]:
    """Metrics on the labelled images: with the applied threshold, and cross-validated when calibrated."""
    out: dict[str, Any] = {
        "applied": metrics.classification_metrics(labels, decisions[labelled], scores[labelled]),
    }
    counts = np.bincount(labels, minlength=2)
    if counts.min() >= 2:
        folds = int(min(CV_FOLDS, counts.min()))
        cv_decisions, _ = cross_validated_decisions(scores[labelled], labels, folds=folds, seed=config.seed)
        out["cross_validated"] = metrics.classification_metrics(labels, cv_decisions, scores[labelled])
        out["cv_folds"] = folds
    return out
