"""The reference check: are the reference images drawn like the candidates? A blind two-sample test.

Every calibrated verdict (models/calibration.py) assumes that the reference images (known not to be
used) are exchangeable with the candidates that were not used. This module tests the part of that
assumption the real images alone can test, without ever looking at the generated images, so that what it
measures is how the reference was drawn and never leakage:

1. Features that see how an image was *acquired* as well as what it shows (`check_features`): intensity
   percentiles, contrast, gradient and Laplacian energy (sharpness, noise), the radial power spectrum in
   bands (blur, noise, resampling), and a per-image-normalised 8x8 thumbnail (content, patient mix);
   models/reference_features.py.
2. Units (`check_units`, models/reference_units.py): images that are not independent are tested together. Known groups (DICOM
   patients, volumes) are units; images whose normalised thumbnails are near-duplicates (neighbouring
   slices of one volume) are joined into one unit as well, so correlated slices never count as many
   independent pieces of evidence.
3. A cross-fitted classifier (`cross_fitted_scores`): ridge logistic regression, trained on the units of
   four folds and scoring the held-out fifth, so no unit is scored by a model that saw it.
4. A clustered AUC test (`clustered_auc_test`): the held-out scores' AUC (reference vs candidates), with
   the cluster-robust variance of Obuchowski (1997), one-sided against AUC = 0.5 with a t reference
   distribution (units - 1 degrees of freedom). A random hold-out gives AUC near 0.5; a reference from
   another scanner, site or patient mix gives AUC above it.
5. With fewer than MIN_UNITS units (a few slice stacks, each one chain), the paired test instead
   (models/reference_pairs.py): near-duplicate pairs with one image on each side of the reference line,
   whose acquisition statistics differ with a random sign when the reference was drawn at random.

Null hypothesis: reference and candidate units are drawn alike, so held-out scores do not tell them
apart. Its false-alarm rate on exchangeable splits, independent and slice-correlated, is checked by
simulation in tests/models/test_reference_check.py. A failed check makes the leakage verdict
inconclusive (models/stages/decide.py). Passing is not proof of exchangeability: the check sees
differences its features and a linear model can see, with the power measured in docs/benchmarks.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from synthaudit.models.reference_features import ACQUISITION_COLUMNS, FEATURES, check_features
from synthaudit.models.reference_pairs import MIN_PAIRS, greedy_pairs, paired_differences, sign_flip_test
from synthaudit.models.reference_units import (
    NEAR_DUPLICATE_COSINE,
    Neighbours,
    check_units,
    thumbnail_neighbours,
)

DEFAULT_CHECK_LEVEL = 0.01
FOLDS = 5  # cross-fitted blind scores (evidence, the benchmark's blind baseline)
SPLITS = 5  # random halvings of the test
MIN_UNITS = 10  # fewer independent units than this: the check cannot be made
RIDGE = 1.0  # L2 penalty of the logistic regression (features are standardised)
NEWTON_STEPS = 25
__all__ = [  # the features and units live in their own modules; the check's callers find them here too
    "ACQUISITION_COLUMNS",
    "FEATURES",
    "NEAR_DUPLICATE_COSINE",
    "Neighbours",
    "check_features",
    "check_reference",
    "check_units",
    "thumbnail_neighbours",
]
TEST_NAME = "cross-fitted classifier AUC (clustered)"
PAIRED_TEST_NAME = "sign-flip test of near-duplicate pairs across the reference"


@dataclass(frozen=True)
class ReferenceCheck:
    """The check's result: `passed` is None when it could not be made (too few units)."""

    test: str
    statistic: float | None  # held-out AUC, reference vs candidates (0.5: alike)
    p_value: float | None  # the p-value of the test that was made
    level: float
    passed: bool | None
    units: int
    classifier_p_value: float | None  # None: fewer than MIN_UNITS units
    pairs: int | None  # near-duplicate pairs across the reference (None: not looked for)
    paired_statistic: float | None  # root-mean-square sign-flip z score (about 1 when alike)
    paired_p_value: float | None  # None: made only without the classifier test, and with MIN_PAIRS pairs
    grouping: str
    n_reference: int
    n_candidates: int
    features: str
    corrected: bool
    effective_reference_size: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _standardise(x: np.ndarray) -> np.ndarray:
    mu = x.mean(axis=0)
    sd = x.std(axis=0)
    sd[sd < 1e-9] = 1.0
    return np.clip((x - mu) / sd, -8.0, 8.0)


def fit_logistic(x: np.ndarray, y: np.ndarray, ridge: float = RIDGE) -> np.ndarray:
    """Ridge logistic regression by Newton's method: weights [D + 1] (intercept last, not penalised).
    Classes are weighted to equal total weight, so an unbalanced split does not move the intercept only."""
    xb = np.c_[x, np.ones(len(x))]
    pos = y.mean()
    weight = np.where(y == 1, 0.5 / max(pos, 1e-9), 0.5 / max(1 - pos, 1e-9))
    penalty = np.full(xb.shape[1], ridge)
    penalty[-1] = 0.0
    w = np.zeros(xb.shape[1])
    for _ in range(NEWTON_STEPS):
        p = 1.0 / (1.0 + np.exp(-np.clip(xb @ w, -30, 30)))
        grad = xb.T @ (weight * (p - y)) + penalty * w
        hess = (xb * (weight * p * (1 - p))[:, None]).T @ xb + np.diag(penalty + 1e-9)
        step = np.linalg.solve(hess, grad)
        w -= step
        if np.abs(step).max() < 1e-6:
            break
    return w


def unit_folds(units: np.ndarray, folds: int, seed: int) -> np.ndarray:
    """A fold per image such that every unit lies in one fold (units shuffled, then dealt by size)."""
    n_units = int(units.max()) + 1
    sizes = np.bincount(units, minlength=n_units)
    order = np.random.default_rng(seed).permutation(n_units)
    order = order[np.argsort(-sizes[order], kind="stable")]
    load = np.zeros(folds)
    fold_of_unit = np.empty(n_units, dtype=np.int64)
    for u in order.tolist():
        f = int(np.argmin(load))
        fold_of_unit[u] = f
        load[f] += sizes[u]
    return fold_of_unit[units]


def cross_fitted_scores(
    features: np.ndarray, is_reference: np.ndarray, units: np.ndarray, folds: int = FOLDS, seed: int = 0
) -> np.ndarray:
    """Held-out classifier scores (log-odds of "reference"), each from a model that never saw its unit;
    standardised within each fold so the folds' scores compare."""
    x = _standardise(np.asarray(features, dtype=np.float64))
    y = np.asarray(is_reference, dtype=np.float64)
    fold = unit_folds(units, folds, seed)
    scores = np.zeros(len(y))
    for f in range(folds):
        test = fold == f
        train = ~test
        if not test.any():
            continue
        if y[train].min() == y[train].max():
            scores[test] = 0.0
            continue
        w = fit_logistic(x[train], y[train])
        s = np.c_[x[test], np.ones(int(test.sum()))] @ w
        sd = s.std()
        scores[test] = (s - s.mean()) / sd if sd > 1e-12 else 0.0
    return scores


def clustered_auc_test(scores: np.ndarray, positive: np.ndarray, units: np.ndarray) -> tuple[float, float]:
    """(AUC, one-sided p) of scores for positives vs negatives, AUC = 0.5 under the null, with the
    cluster-robust variance of Obuchowski (1997) over units (a unit may hold both kinds) and a t reference
    distribution with units - 1 degrees of freedom. Independent images: DeLong's variance."""
    from scipy.stats import rankdata
    from scipy.stats import t as student_t

    s = np.asarray(scores, dtype=np.float64)
    pos = np.asarray(positive, dtype=bool)
    m, n = int(pos.sum()), int((~pos).sum())
    if m == 0 or n == 0:
        raise ValueError("the AUC test needs both kinds of images")
    all_ranks = rankdata(s)
    pos_ranks = rankdata(s[pos])
    neg_ranks = rankdata(s[~pos])
    v10 = (all_ranks[pos] - pos_ranks) / n  # per positive: share of negatives below (ties 1/2)
    v01 = 1.0 - (all_ranks[~pos] - neg_ranks) / m  # per negative: share of positives above
    auc = float(v10.mean())
    _, u = np.unique(units, return_inverse=True)
    n_units = int(u.max()) + 1
    if n_units < 2:
        return auc, 1.0
    m_i = np.bincount(u[pos], minlength=n_units)
    n_i = np.bincount(u[~pos], minlength=n_units)
    v10_i = np.bincount(u[pos], weights=v10, minlength=n_units) - m_i * auc
    v01_i = np.bincount(u[~pos], weights=v01, minlength=n_units) - n_i * auc
    scale = n_units / (n_units - 1.0)
    s10 = scale * (v10_i**2).sum() / m
    s01 = scale * (v01_i**2).sum() / n
    s11 = scale * (v10_i * v01_i).sum()
    var = s10 / m + s01 / n + 2.0 * s11 / (m * n)
    if var <= 1e-15:
        return auc, 0.0 if auc > 0.5 else 1.0
    z = (auc - 0.5) / math.sqrt(var)
    return auc, float(student_t.sf(z, df=n_units - 1))


def format_p(p: float) -> str:
    """A p-value for a sentence: two significant digits, "< 1e-15" below what doubles resolve."""
    return "< 1e-15" if p < 1e-15 else f"= {p:.2g}"


def describe_evidence(check: dict[str, Any]) -> str:
    """What each test of a check (its metrics dict) saw, in words: "" when neither was made."""
    parts = []
    if check.get("classifier_p_value") is not None and check.get("statistic") is not None:
        parts.append(
            f"a classifier trained on part of the images told the rest apart with AUC {check['statistic']:.2f} "
            f"(0.5 means alike; p {format_p(check['classifier_p_value'])}, {check.get('units', 0):,} independent "
            f"units: {check.get('grouping', '')})"
        )
    if check.get("paired_p_value") is not None:
        parts.append(
            f"{check.get('pairs', 0):,} pairs of near-identical images, one in the reference and one among the "
            f"candidates, differed in how they were acquired by {check.get('paired_statistic') or 0:.1f} "
            f"standard errors on average (about 1 when alike; sign-flip p {format_p(check['paired_p_value'])})"
        )
    return "; ".join(parts)


def _message(passed: bool | None, p: float | None, auc: float | None, units: int, pairs: int | None) -> str:
    if passed is None:
        return (
            f"The reference check could not be made: the images form only {units} independent units "
            f"(at least {MIN_UNITS} are needed) and {pairs or 0} near-duplicate pairs across the reference "
            f"(at least {MIN_PAIRS}), so nothing checked that the reference is drawn like the candidates."
        )
    assert p is not None
    size = f", AUC {auc:.2f}" if auc is not None else ""
    if passed:
        return (
            f"The reference images look like the candidates (p {format_p(p)}{size}, without looking at "
            "the generated images)."
        )
    return (
        f"The reference images differ from the candidates (p {format_p(p)}{size}), found without looking "
        "at the generated images: their scores cannot say whether the generator leaks."
    )


def split_test(
    features: np.ndarray, is_reference: np.ndarray, units: np.ndarray, splits: int = SPLITS, seed: int = 0
) -> tuple[float, float]:
    """(mean held-out AUC, p): `splits` random halvings of the units; each trains the classifier on one
    half and tests the other half's scores with `clustered_auc_test`, a p-value valid given the training
    half; the p-values are combined by twice their median (Meinshausen, Meier and Buehlmann 2009, valid
    under any dependence between the splits). Pooling cross-fitted scores instead would understate the
    variance (each fold's model was trained on the other folds' labels)."""
    x = _standardise(np.asarray(features, dtype=np.float64))
    y = np.asarray(is_reference, dtype=bool)
    aucs, ps = [], []
    for s in range(splits):
        half = unit_folds(units, 2, seed * 7919 + s) == 0
        train, test = ~half, half
        if y[train].all() or not y[train].any() or y[test].all() or not y[test].any():
            continue
        w = fit_logistic(x[train], y[train].astype(np.float64))
        scores = np.c_[x[test], np.ones(int(test.sum()))] @ w
        auc, p = clustered_auc_test(scores, y[test], units[test])
        aucs.append(auc)
        ps.append(p)
    if not ps:
        return 0.5, 1.0
    return float(np.mean(aucs)), float(min(1.0, 2.0 * np.median(ps)))


def check_reference(
    images: np.ndarray,
    is_reference: np.ndarray,
    groups: list[str | None] | None = None,
    level: float = DEFAULT_CHECK_LEVEL,
    seed: int = 0,
    features: np.ndarray | None = None,
) -> tuple[ReferenceCheck, np.ndarray | None]:
    """The reference check of a calibrated audit over the real pool: `images` uint8 [N, H, W] (candidates
    and reference), `is_reference` per image, optional known group per image (patient, volume).

    The classifier test (`split_test`) over independent units when there are at least MIN_UNITS of them;
    otherwise (slice stacks: each a chain of near-duplicates, a unit) the paired test over near-duplicate
    pairs across the reference (models/reference_pairs.py, at least MIN_PAIRS). Neither possible: not made.
    Returns the result and each image's cross-fitted blind score (the report's evidence; None unless the
    classifier test was made)."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    ref = np.asarray(is_reference, dtype=bool)
    feats = check_features(images) if features is None else features
    neighbours = thumbnail_neighbours(images)
    units, grouping = check_units(images, groups, neighbours)
    n_units = int(units.max()) + 1
    base = ReferenceCheck(
        test=TEST_NAME,
        statistic=None,
        p_value=None,
        level=level,
        passed=None,
        units=n_units,
        classifier_p_value=None,
        pairs=None,
        paired_statistic=None,
        paired_p_value=None,
        grouping=grouping,
        n_reference=int(ref.sum()),
        n_candidates=int((~ref).sum()),
        features=FEATURES,
        corrected=False,
        effective_reference_size=None,
        message="",
    )
    if n_units >= MIN_UNITS and min(np.unique(units[ref]).size, np.unique(units[~ref]).size) >= 2:
        auc, p = split_test(feats, ref, units, SPLITS, seed)
        passed = bool(p > level)
        result = replace(
            base,
            statistic=auc,
            p_value=p,
            classifier_p_value=p,
            passed=passed,
            message=_message(passed, p, auc, n_units, None),
        )
        return result, cross_fitted_scores(feats, ref, units, FOLDS, seed)
    by_rank = thumbnail_neighbours(images, ranks=True)  # pairs that a change of intensity does not part
    pairs = greedy_pairs(by_rank.index, by_rank.cosine, NEAR_DUPLICATE_COSINE)
    pairs = pairs[units[pairs[:, 0]] == units[pairs[:, 1]]]  # within one unit: no sign shared across units
    paired = sign_flip_test(paired_differences(feats[:, :ACQUISITION_COLUMNS], pairs, ref), seed=seed)
    passed_pairs = None if paired.p_value is None else bool(paired.p_value > level)
    result = replace(
        base,
        test=TEST_NAME if paired.p_value is None else PAIRED_TEST_NAME,
        p_value=paired.p_value,
        passed=passed_pairs,
        pairs=paired.pairs,
        paired_statistic=paired.statistic,
        paired_p_value=paired.p_value,
        message=_message(passed_pairs, paired.p_value, None, n_units, paired.pairs),
    )
    return result, None


def blind_scores(
    images: np.ndarray, is_reference: np.ndarray, groups: list[str | None] | None = None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(held-out scores, units): the check's cross-fitted scores of each image, for the report's evidence
    and the benchmark's blind baseline (`is_reference` may be any binary split, e.g. not used vs used)."""
    units, _ = check_units(images, groups)
    return cross_fitted_scores(
        check_features(images), np.asarray(is_reference, bool), units, FOLDS, seed
    ), units
