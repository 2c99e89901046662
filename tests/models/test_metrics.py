"""synthaudit.models.metrics: hand-computed confusion matrices, AUC and TPR@FPR."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from synthaudit.models.metrics import (
    bootstrap_ci,
    classification_metrics,
    confusion_counts,
    format_metrics_table,
    roc_auc,
    tpr_at_fpr,
)

Y_TRUE = [1, 1, 1, 0, 0, 0, 0, 1, 0, 1]
Y_PRED = [1, 1, 0, 0, 1, 0, 0, 1, 0, 0]  # tp=3, fn=2, fp=1, tn=4


def test_confusion_counts_by_hand() -> None:
    assert confusion_counts(Y_TRUE, Y_PRED) == {"tp": 3, "fp": 1, "tn": 4, "fn": 2}


def test_classification_metrics_by_hand() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED)
    assert m["accuracy"] == pytest.approx(0.7)
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.6)
    assert m["specificity"] == pytest.approx(0.8)
    assert m["f1"] == pytest.approx(2 * 0.75 * 0.6 / 1.35)
    assert (m["tp"], m["fp"], m["tn"], m["fn"], m["n"]) == (3, 1, 4, 2, 10)
    assert math.isnan(m["auc"]) and math.isnan(m["tpr_at_1pct_fpr"])


def test_undefined_ratios_are_zero_not_nan() -> None:
    m = classification_metrics([0, 0, 0], [0, 0, 0])
    assert m["precision"] == 0.0 and m["recall"] == 0.0 and m["f1"] == 0.0
    assert m["accuracy"] == 1.0 and m["specificity"] == 1.0


def test_invalid_labels_rejected() -> None:
    with pytest.raises(ValueError):
        confusion_counts([0, 2], [0, 1])
    with pytest.raises(ValueError):
        confusion_counts([0, 1, 1], [0, 1])


def test_roc_auc_small_cases() -> None:
    # pairs (pos, neg): (0.35>0.1) (0.35<0.4) (0.8>0.1) (0.8>0.4) -> 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # tie counts one half
    assert roc_auc([0, 0, 1], [0.2, 0.7, 0.7]) == pytest.approx(0.75)
    assert roc_auc([1, 1, 0, 0], [0.9, 0.8, 0.2, 0.1]) == 1.0
    assert roc_auc([1, 1, 0, 0], [0.1, 0.2, 0.8, 0.9]) == 0.0
    assert math.isnan(roc_auc([1, 1, 1], [0.1, 0.2, 0.3]))


def test_roc_auc_matches_pairwise_definition(rng: np.random.Generator) -> None:
    y = rng.integers(0, 2, 300)
    s = np.round(rng.normal(size=300) + y, 1)  # rounding creates many ties
    pos, neg = s[y == 1], s[y == 0]
    diff = pos[:, None] - neg[None, :]
    expected = ((diff > 0).sum() + 0.5 * (diff == 0).sum()) / diff.size
    assert roc_auc(y, s) == pytest.approx(expected)


def test_classification_metrics_with_scores() -> None:
    m = classification_metrics([0, 0, 1, 1], [0, 1, 0, 1], scores=[0.1, 0.4, 0.35, 0.8])
    assert m["auc"] == pytest.approx(0.75)
    assert m["tpr_at_1pct_fpr"] == pytest.approx(0.5)


def test_tpr_at_fpr() -> None:
    y = np.r_[np.ones(10, int), np.zeros(100, int)]
    # 6 positives above every negative, then one negative, then the other 4 positives.
    s = np.r_[np.linspace(10, 9, 6), np.linspace(4, 3, 4), 5.0, np.linspace(2, 0, 99)]
    assert tpr_at_fpr(y, s, 0.01) == pytest.approx(1.0)  # 1 FP out of 100 is allowed
    assert tpr_at_fpr(y, s, 0.0) == pytest.approx(0.6)
    assert tpr_at_fpr(y, s, 0.005) == pytest.approx(0.6)
    # A tie between a positive and a negative cannot be split.
    assert tpr_at_fpr([1, 0, 1], [0.9, 0.9, 0.1], 0.0) == 0.0
    assert math.isnan(tpr_at_fpr([0, 0], [0.1, 0.2]))


def test_bootstrap_ci_is_seeded_and_brackets_the_estimate(rng: np.random.Generator) -> None:
    y = rng.integers(0, 2, 200)
    s = y + rng.normal(scale=0.8, size=200)
    p = (s > 0.5).astype(int)
    ci = bootstrap_ci(y, p, s, n_boot=200, seed=3)
    assert ci == bootstrap_ci(y, p, s, n_boot=200, seed=3)
    assert ci != bootstrap_ci(y, p, s, n_boot=200, seed=4)
    point = classification_metrics(y, p, s)
    for name in ("accuracy", "precision", "recall", "specificity", "f1", "auc"):
        lo, hi = ci[name]
        assert lo <= point[name] <= hi and hi - lo < 0.3, name
    assert "auc" not in bootstrap_ci(y, p, n_boot=10)


def test_format_metrics_table_is_a_markdown_table() -> None:
    rows = [
        {"method": "similarity", "auc": 0.91234, "f1": 0.5, "n": 120},
        {"method": "pixels", "auc": float("nan"), "f1": 0.25},
    ]
    text = format_metrics_table(rows, ["method", "auc", "f1", "n"])
    lines = text.splitlines()
    assert len(lines) == 4
    assert lines[0].split("|")[1].strip() == "method"
    assert all(re.fullmatch(r"-{3,}:?", cell.strip()) for cell in lines[1].split("|")[1:-1])
    assert "0.912" in lines[2] and "0.500" in lines[2] and "120" in lines[2]
    assert "nan" in lines[3] and "0.250" in lines[3]
    assert len({len(line) for line in lines}) == 1  # aligned columns
    assert all(line.startswith("| ") and line.endswith(" |") for line in lines)
    assert lines[1].rstrip(" |").endswith(":")  # numeric column right-aligned
