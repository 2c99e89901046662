"""Shared helpers for the scoring research scripts: load a benchmark folder, evaluate a score vector.

Metrics: AUC, TPR@1%FPR, F1 with a 5-fold cross-validated F1-optimal threshold (each fold decided by a
threshold fitted on the other four), F1 with an unsupervised median split. Pure numpy.
"""

from __future__ import annotations

import csv
import time
from pathlib import Path

import numpy as np
from PIL import Image

BENCH = Path("/work/shared/bench")
FOLDERS = ["fmnist-ddpm-dev", "fmnist-ddpm-dev-hard"]


def load_folder(name: str):
    root = BENCH / name
    lab = {}
    with open(root / "labels.csv") as f:
        for r in csv.DictReader(f):
            lab[r["id"]] = int(r["used"])
    cache = Path(f"/tmp/sa_cache_{name}.npz")
    if cache.exists():
        z = np.load(cache)
        real, gen, ids = z["real"], z["gen"], list(z["ids"])
    else:
        rp = sorted((root / "real").glob("*.png"))
        gp = sorted((root / "generated").glob("*.png"))
        real = np.stack([np.array(Image.open(p).convert("L")) for p in rp])
        gen = np.stack([np.array(Image.open(p).convert("L")) for p in gp])
        ids = [p.stem for p in rp]
        np.savez(cache, real=real, gen=gen, ids=np.array(ids))
    y = np.array([lab[i] for i in ids])
    return real, gen, y


def roc_auc(y, s):
    y = np.asarray(y)
    s = np.asarray(s, dtype=np.float64)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    ranks[order] = np.arange(1, len(s) + 1)
    # average ties
    _, inv, cnt = np.unique(s, return_inverse=True, return_counts=True)
    sums = np.bincount(inv, weights=ranks)
    ranks = (sums / cnt)[inv]
    n1 = y.sum()
    n0 = len(y) - n1
    return float((ranks[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def tpr_at_fpr(y, s, fpr=0.01):
    neg = np.sort(s[y == 0])[::-1]
    k = int(np.floor(fpr * len(neg)))
    thr = neg[k] if k < len(neg) else -np.inf  # strictly above the (k+1)-th highest negative
    return float((s[y == 1] > thr).mean())


def f1(y, pred):
    tp = int(((pred == 1) & (y == 1)).sum())
    fp = int(((pred == 1) & (y == 0)).sum())
    fn = int(((pred == 0) & (y == 1)).sum())
    return 2 * tp / max(2 * tp + fp + fn, 1)


def best_thr(s, y):
    cand = np.unique(s)
    best, bt = -1, cand[0]
    for t in cand:
        v = f1(y, (s >= t).astype(int))
        if v > best:
            best, bt = v, t
    return bt


def f1_cv(y, s, folds=5, seed=0):
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(y))
    pred = np.zeros(len(y), int)
    for k in range(folds):
        te = perm[k::folds]
        tr = np.setdiff1d(perm, te)
        t = best_thr(s[tr], y[tr])
        pred[te] = (s[te] >= t).astype(int)
    return f1(y, pred)


def f1_median(y, s):
    return f1(y, (s >= np.median(s)).astype(int))


def evaluate(y, s):
    s = np.asarray(s, dtype=np.float64)
    return {"auc": roc_auc(y, s), "tpr1": tpr_at_fpr(y, s), "f1cv": f1_cv(y, s), "f1med": f1_median(y, s)}


def fmt(name, m, wall=None):
    w = f"{wall:7.2f}s" if wall is not None else ""
    return f"{name:42s} AUC {m['auc']:.4f}  TPR@1% {m['tpr1']:.3f}  F1cv {m['f1cv']:.3f}  F1med {m['f1med']:.3f} {w}"


class Timer:
    def __enter__(self):
        self.t = time.perf_counter()
        return self

    def __exit__(self, *a):
        self.dt = time.perf_counter() - self.t


def l2n(x):
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)


def knn_dists(R, G, K=20, metric="cos"):
    """Sorted distances real->generated [N,K] and real->other-real [N,K] (self excluded). Exact, dense."""
    if metric == "cos":
        R = l2n(R)
        G = l2n(G)
        S = R @ G.T
        Srr = R @ R.T
        np.fill_diagonal(Srr, -np.inf)
        Dg = np.sqrt(np.maximum(2 - 2 * S, 1e-12))
        Dr = np.sqrt(np.maximum(2 - 2 * Srr, 1e-12))
    else:

        def sq(A, B):
            return np.maximum((A * A).sum(1)[:, None] + (B * B).sum(1)[None] - 2 * A @ B.T, 1e-12)

        Dg = np.sqrt(sq(R, G))
        Dr = sq(R, R)
        np.fill_diagonal(Dr, np.inf)
        Dr = np.sqrt(Dr)
    dg = np.sort(Dg, 1)[:, :K]
    dr = np.sort(Dr, 1)[:, :K]
    return dg, dr


def score_suite(dg, dr):
    """A fixed set of candidate scores from sorted kNN distances."""
    out = {"max(-dg1)": -dg[:, 0]}
    for kr in (1, 3, 5):
        out[f"log dr{kr}-log dg1"] = np.log(dr[:, kr - 1]) - np.log(dg[:, 0])
    for K in (3, 5, 10):
        out[f"mean_k<={K} log dr-log dg"] = np.log(dr[:, :K]).mean(1) - np.log(dg[:, :K]).mean(1)
    return out
