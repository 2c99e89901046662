"""The figures of the research tables (docs/research.md): AUC, TPR@1%FPR and two F1s of a score vector."""

from __future__ import annotations

import numpy as np

from synthaudit.models.metrics import roc_auc, tpr_at_fpr

FOLDS = 5


def _f1_at(y: np.ndarray, s: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """F1 of the decisions `s >= t` for every t in thresholds."""
    order = np.argsort(s, kind="mergesort")
    s_sorted, y_sorted = s[order], y[order]
    first = np.searchsorted(s_sorted, thresholds, side="left")  # images below t
    used_above = np.r_[np.cumsum(y_sorted[::-1])[::-1], 0]  # used images from each position up
    tp = used_above[first]
    predicted = len(s) - first
    return 2 * tp / np.maximum(predicted + int(y.sum()), 1)


def best_threshold(s: np.ndarray, y: np.ndarray) -> float:
    """The lowest score t whose decisions `s >= t` maximise F1 on (s, y)."""
    candidates = np.unique(s)
    return float(candidates[int(np.argmax(_f1_at(y, s, candidates)))])


def f1_score(y: np.ndarray, predicted: np.ndarray) -> float:
    """F1 of 0/1 decisions."""
    tp = int(((predicted == 1) & (y == 1)).sum())
    return 2 * tp / max(int(predicted.sum()) + int(y.sum()), 1)


def f1_cross_validated(y: np.ndarray, s: np.ndarray, folds: int = FOLDS, seed: int = 0) -> float:
    """F1 when each of `folds` seeded random folds is decided by the F1-optimal threshold of the others."""
    perm = np.random.default_rng(seed).permutation(len(y))
    predicted = np.zeros(len(y), int)
    for k in range(folds):
        test = perm[k::folds]
        train = np.setdiff1d(perm, test)
        predicted[test] = (s[test] >= best_threshold(s[train], y[train])).astype(int)
    return f1_score(y, predicted)


def evaluate(y: np.ndarray, scores: np.ndarray) -> dict[str, float]:
    """auc, tpr1 (TPR at 1 % FPR), f1cv (cross-validated threshold) and f1med (label-free median split)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(y).astype(int)
    return {
        "auc": roc_auc(y, s),
        "tpr1": tpr_at_fpr(y, s, 0.01),
        "f1cv": f1_cross_validated(y, s),
        "f1med": f1_score(y, (s >= np.median(s)).astype(int)),
    }


def fmt(name: str, m: dict[str, float], wall: float | None = None) -> str:
    """One aligned text line of evaluate()'s figures."""
    w = f"{wall:7.2f}s" if wall is not None else ""
    figures = f"AUC {m['auc']:.4f}  TPR@1% {m['tpr1']:.3f}  F1cv {m['f1cv']:.3f}  F1med {m['f1med']:.3f}"
    return f"{name:42s} {figures} {w}"


def markdown_cells(m: dict[str, float]) -> str:
    """`AUC | TPR@1%FPR | F1 (cv) | F1 (median)` cells of a markdown table row."""
    return f"{m['auc']:.3f} | {m['tpr1']:.3f} | {m['f1cv']:.3f} | {m['f1med']:.3f}"


def auc_tpr(y: np.ndarray, scores: np.ndarray) -> str:
    """`AUC / TPR@1%FPR` as one table cell."""
    return f"{roc_auc(y, scores):.3f} / {tpr_at_fpr(y, scores, 0.01):.3f}"
