"""synthaudit.models.decide: thresholds from labels, priors and a Gaussian mixture; cross-validated decisions."""

from __future__ import annotations

import numpy as np
import pytest

from synthaudit.models.decide import (
    _stratified_folds,
    apply_threshold,
    cross_validated_decisions,
    f1_optimal_threshold,
    mixture_threshold,
    prior_threshold,
)
from synthaudit.models.metrics import classification_metrics


def test_apply_threshold_is_inclusive_int8() -> None:
    out = apply_threshold([0.1, 0.5, 0.9], 0.5)
    assert out.dtype == np.int8 and out.tolist() == [0, 1, 1]


def test_f1_optimal_threshold_separable_is_a_midpoint() -> None:
    scores = [0.1, 0.2, 0.3, 0.7, 0.8]
    labels = [0, 0, 0, 1, 1]
    t = f1_optimal_threshold(scores, labels)
    assert t == pytest.approx(0.5)
    assert apply_threshold(scores, t).tolist() == labels


def test_f1_optimal_threshold_by_hand() -> None:
    # cuts: >=1 -> F1 .667, >=1.5 -> .8, >=2.5 -> .5, >=3.5 -> .667
    assert f1_optimal_threshold([1, 2, 3, 4], [0, 1, 0, 1]) == pytest.approx(1.5)


def test_f1_optimal_threshold_ties_go_to_the_higher_threshold() -> None:
    # {4} -> tp=1, pred=1, P=2: F1 = 2/3; {1,2,3,4} -> tp=2, pred=4: F1 = 4/6 = 2/3.  Middle cuts: lower.
    scores, labels = [1.0, 2.0, 3.0, 4.0], [1, 0, 0, 1]
    assert f1_optimal_threshold(scores, labels) == pytest.approx(3.5)


def test_f1_optimal_threshold_without_positives_selects_nothing() -> None:
    t = f1_optimal_threshold([0.2, 0.4], [0, 0])
    assert apply_threshold([0.2, 0.4], t).tolist() == [0, 0]


def test_prior_threshold_selects_the_used_fraction(rng: np.random.Generator) -> None:
    scores = rng.normal(size=1000)
    for fraction in (0.0, 0.1, 0.5, 0.73, 1.0):
        t = prior_threshold(scores, fraction)
        assert apply_threshold(scores, t).sum() == round(fraction * 1000)
    with pytest.raises(ValueError):
        prior_threshold(scores, 1.5)


def test_mixture_threshold_splits_two_clusters(rng: np.random.Generator) -> None:
    scores = np.r_[rng.normal(0.0, 1.0, 600), rng.normal(10.0, 1.0, 600)]
    t = mixture_threshold(scores, seed=0)
    assert 4.0 < t < 6.0
    assert mixture_threshold(scores, seed=0) == t


def test_mixture_threshold_respects_unequal_weights(rng: np.random.Generator) -> None:
    # A heavier low component pushes the equal-posterior point towards the high component.
    scores = np.r_[rng.normal(0.0, 1.0, 1800), rng.normal(4.0, 1.0, 200)]
    t = mixture_threshold(scores)
    equal_weight_point = 2.0
    assert equal_weight_point < t < 3.5


def test_mixture_threshold_degenerate_falls_back_to_median() -> None:
    assert mixture_threshold([0.3, 0.3, 0.3, 0.3, 0.3]) == pytest.approx(0.3)
    assert mixture_threshold([1.0, 2.0, 3.0]) == pytest.approx(2.0)


def test_cross_validated_decisions_never_use_the_items_own_label() -> None:
    # Leave-one-out (4 folds for 4 items).  Fitting on everything gives t=1.5 -> [0, 1, 1, 1];
    # without its own label the score-2 positive is judged by t=3.5 and becomes 0.
    decisions, thresholds = cross_validated_decisions([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1], folds=4)
    assert decisions.tolist() == [0, 0, 1, 1]
    assert sorted(thresholds) == pytest.approx([1.5, 1.5, 2.0, 3.5])
    assert decisions.dtype == np.int8


def test_cross_validated_decisions_on_separable_data(rng: np.random.Generator) -> None:
    labels = np.r_[np.ones(50, int), np.zeros(50, int)]
    scores = np.r_[rng.uniform(0.6, 1.0, 50), rng.uniform(0.0, 0.4, 50)]
    decisions, thresholds = cross_validated_decisions(scores, labels, folds=5, seed=1)
    assert len(thresholds) == 5 and all(0.4 <= t <= 0.6 for t in thresholds)
    assert classification_metrics(labels, decisions)["accuracy"] == 1.0
    again, _ = cross_validated_decisions(scores, labels, folds=5, seed=1)
    assert (again == decisions).all()


def test_stratified_folds_balance_each_class() -> None:
    labels = np.r_[np.ones(10, int), np.zeros(15, int)]
    folds = _stratified_folds(labels, 5, seed=0)
    for f in range(5):
        assert (labels[folds == f] == 1).sum() == 2
        assert (labels[folds == f] == 0).sum() == 3
