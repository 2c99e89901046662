"""Binary classification metrics for membership decisions (numpy only)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

METRIC_NAMES = ("accuracy", "precision", "recall", "specificity", "f1")


def _binary(values: object, what: str) -> np.ndarray:
    """A 1-D int8 array of 0/1 values, or ValueError."""
    arr = np.asarray(values).reshape(-1)
    if arr.size and not np.isin(arr, (0, 1)).all():
        raise ValueError(f"{what} must contain only 0 and 1")
    return arr.astype(np.int8)


def _scores(values: object, n: int) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    if arr.size != n:
        raise ValueError(f"scores has {arr.size} values, labels have {n}")
    if np.isnan(arr).any():
        raise ValueError("scores contain NaN")
    return arr


def _pair(y_true: object, y_pred: object) -> tuple[np.ndarray, np.ndarray]:
    t, p = _binary(y_true, "y_true"), _binary(y_pred, "y_pred")
    if t.size != p.size:
        raise ValueError(f"y_true has {t.size} values, y_pred has {p.size}")
    return t, p


def confusion_counts(y_true: object, y_pred: object) -> dict[str, int]:
    """True/false positives/negatives (positive = 1 = used for training)."""
    t, p = _pair(y_true, y_pred)
    return {
        "tp": int(np.sum((t == 1) & (p == 1))),
        "fp": int(np.sum((t == 0) & (p == 1))),
        "tn": int(np.sum((t == 0) & (p == 0))),
        "fn": int(np.sum((t == 1) & (p == 0))),
    }


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their average rank."""
    order = np.argsort(x, kind="mergesort")
    xs = x[order]
    bounds = np.flatnonzero(np.r_[True, xs[1:] != xs[:-1], True])
    avg = (bounds[:-1] + 1 + bounds[1:]) / 2.0
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = np.repeat(avg, np.diff(bounds))
    return ranks


def roc_auc(y_true: object, scores: object) -> float:
    """Area under the ROC curve (Mann-Whitney U, ties count 1/2); nan when a class is absent."""
    t = _binary(y_true, "y_true")
    s = _scores(scores, t.size)
    n_pos = int(t.sum())
    n_neg = t.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return math.nan
    rank_sum = float(_average_ranks(s)[t == 1].sum())
    return (rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg)


def roc_curve(y_true: object, scores: object) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(fpr, tpr, thresholds) at every distinct score, starting at (0, 0) with threshold +inf."""
    t = _binary(y_true, "y_true")
    s = _scores(scores, t.size)
    order = np.argsort(-s, kind="mergesort")
    ss, tt = s[order], t[order].astype(np.int64)
    last = np.r_[np.flatnonzero(ss[1:] != ss[:-1]), ss.size - 1] if ss.size else np.array([], int)
    tps, fps = np.cumsum(tt)[last], np.cumsum(1 - tt)[last]
    n_pos, n_neg = int(tt.sum()), int(tt.size - tt.sum())
    tpr = np.r_[0.0, tps / n_pos] if n_pos else np.full(last.size + 1, math.nan)
    fpr = np.r_[0.0, fps / n_neg] if n_neg else np.full(last.size + 1, math.nan)
    return fpr, tpr, np.r_[math.inf, ss[last]]


def tpr_at_fpr(y_true: object, scores: object, fpr: float = 0.01) -> float:
    """Highest TPR on the ROC curve whose FPR <= fpr; nan when a class is absent."""
    fprs, tprs, _ = roc_curve(y_true, scores)
    if np.isnan(fprs).any() or np.isnan(tprs).any():
        return math.nan
    return float(tprs[fprs <= fpr + 1e-12].max())


def _ratio(num: int, den: int) -> float:
    return num / den if den else 0.0


def _from_counts(tp: int, fp: int, tn: int, fn: int) -> dict[str, float]:
    n = tp + fp + tn + fn
    return {
        "accuracy": _ratio(tp + tn, n),
        "precision": _ratio(tp, tp + fp),
        "recall": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "f1": _ratio(2 * tp, 2 * tp + fp + fn),
    }


def classification_metrics(y_true: object, y_pred: object, scores: object = None) -> dict[str, float]:
    """Accuracy, precision, recall, specificity, F1 (0.0 when undefined), AUC and TPR@1%FPR
    (nan without scores), and the raw counts tp, fp, tn, fn, n."""
    counts = confusion_counts(y_true, y_pred)
    out: dict[str, float] = dict(_from_counts(**counts))
    if scores is None:
        out["auc"], out["tpr_at_1pct_fpr"] = math.nan, math.nan
    else:
        out["auc"] = roc_auc(y_true, scores)
        out["tpr_at_1pct_fpr"] = tpr_at_fpr(y_true, scores, 0.01)
    out.update(counts)
    out["n"] = sum(counts.values())
    return out


def _boot_counts(t: np.ndarray, p: np.ndarray, idx: np.ndarray) -> dict[str, np.ndarray]:
    tt, pp = t[idx], p[idx]
    return {
        "tp": np.sum((tt == 1) & (pp == 1), axis=1),
        "fp": np.sum((tt == 0) & (pp == 1), axis=1),
        "tn": np.sum((tt == 0) & (pp == 0), axis=1),
        "fn": np.sum((tt == 1) & (pp == 0), axis=1),
    }


def _vector_metrics(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        return np.divide(num, den, out=np.zeros(num.shape, dtype=np.float64), where=den > 0)

    tp, fp, tn, fn = c["tp"], c["fp"], c["tn"], c["fn"]
    return {
        "accuracy": ratio(tp + tn, tp + fp + tn + fn),
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "specificity": ratio(tn, tn + fp),
        "f1": ratio(2 * tp, 2 * tp + fp + fn),
    }


def _interval(values: np.ndarray) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return (math.nan, math.nan)
    lo, hi = np.percentile(finite, [2.5, 97.5])
    return (float(lo), float(hi))


def bootstrap_ci(
    y_true: object, y_pred: object, scores: object = None, n_boot: int = 1000, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Percentile 95 % bootstrap intervals for the rate metrics (and AUC, TPR@1%FPR with scores)."""
    t, p = _pair(y_true, y_pred)
    s = None if scores is None else _scores(scores, t.size)
    names = list(METRIC_NAMES) + ([] if s is None else ["auc", "tpr_at_1pct_fpr"])
    if t.size == 0 or n_boot < 1:
        return dict.fromkeys(names, (math.nan, math.nan))
    rng = np.random.default_rng(seed)
    samples: dict[str, list[np.ndarray]] = {name: [] for name in names}
    chunk = max(1, min(n_boot, 2_000_000 // t.size))
    for start in range(0, n_boot, chunk):
        idx = rng.integers(0, t.size, size=(min(chunk, n_boot - start), t.size))
        for name, vals in _vector_metrics(_boot_counts(t, p, idx)).items():
            samples[name].append(vals)
        if s is not None:
            samples["auc"].append(np.array([roc_auc(t[i], s[i]) for i in idx]))
            samples["tpr_at_1pct_fpr"].append(np.array([tpr_at_fpr(t[i], s[i]) for i in idx]))
    return {name: _interval(np.concatenate(vals)) for name, vals in samples.items()}


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        return "nan" if math.isnan(value) else f"{float(value):.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _is_numeric(value: object) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def format_metrics_table(rows: list[dict], columns: Sequence[str]) -> str:
    """A Markdown pipe table, padded so it also reads well in a terminal; floats get 3 decimals,
    numeric columns are right-aligned, missing cells are blank."""
    cols = list(columns)
    cells = [[_cell(row.get(c)) for c in cols] for row in rows]
    numeric = [bool(rows) and all(_is_numeric(r.get(c)) or r.get(c) is None for r in rows) for c in cols]
    widths = [max([len(c), 4 if numeric[j] else 3, *(len(r[j]) for r in cells)]) for j, c in enumerate(cols)]

    def line(values: list[str]) -> str:
        padded = [
            v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return "| " + " | ".join(padded) + " |"

    marks = ["-" * (w - 1) + ":" if num else "-" * w for w, num in zip(widths, numeric, strict=True)]
    rule = "| " + " | ".join(marks) + " |"
    return "\n".join([line(cols), rule, *(line(r) for r in cells)])
