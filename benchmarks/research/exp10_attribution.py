"""Exp 10: generated->real attribution scores in the whitened-pixel view (W28), alone and rank-fused with
the kNN log ratio (K = round(N/100)). Each generated image g is attributed to its nearest real r1(g)
with confidence log(d2/d1) (d_j = distance to its j-th nearest real). Variants: margin sum, count,
max margin, margin vs j-th real (j = 2, 3, K+1), soft (top-2 share); on the full folders and on random
250/750 subsamples (mean of 4).
Run: .venv/bin/python benchmarks/research/exp10_attribution.py
"""

import numpy as np
from common import FOLDERS, evaluate, fmt, knn_dists, l2n, load_folder


def ncc_vec(x):
    x = x.reshape(len(x), -1).astype(np.float32)
    return l2n(x - x.mean(1, keepdims=True))


def whiten(R, G, eps=1e-3):
    X = np.concatenate([R, G])
    mu = X.mean(0)
    _, Sv, Vt = np.linalg.svd(X - mu, full_matrices=False)
    var = Sv**2 / len(X)
    P = Vt / np.sqrt(var + eps * var[0])[:, None]
    return l2n((R - mu) @ P.T), l2n((G - mu) @ P.T)


def rankn(s):
    return np.argsort(np.argsort(s, kind="stable"), kind="stable") / (len(s) - 1)


def scores(real, gen):
    N = len(real)
    K = max(1, round(N / 100))
    a, b = whiten(ncc_vec(real), ncc_vec(gen))
    dg, dr = knn_dists(a, b, K, "cos")
    out = {"ratio": np.log(dr).mean(1) - np.log(dg).mean(1)}
    Sgr = b @ a.T
    idx = np.argsort(-Sgr, 1)[:, : K + 1]
    D = np.sqrt(np.maximum(2 - 2 * np.take_along_axis(Sgr, idx, 1), 1e-12))
    r1 = idx[:, 0]
    tie = 1e-9 * out["ratio"]
    for tag, j in (("d2", 2), ("d3", 3), ("dK+1", K + 1)):
        m = np.log(D[:, j - 1] / D[:, 0])
        out[f"attr margin {tag}/d1 sum"] = np.bincount(r1, weights=m, minlength=N) + tie
    out["attr count"] = np.bincount(r1, minlength=N) + tie
    m2 = np.log(D[:, 1] / D[:, 0])
    mx = np.zeros(N)
    np.maximum.at(mx, r1, m2)
    out["attr max margin"] = mx + tie
    out["attr margin^2 sum"] = np.bincount(r1, weights=m2**2, minlength=N) + tie
    for name in list(out):
        if name.startswith("attr"):
            out[f"fuse ratio+{name}"] = (rankn(out["ratio"]) + rankn(out[name])) / 2
    return out


for f in FOLDERS:
    real, gen, y = load_folder(f)
    print("==", f)
    full = scores(real, gen)
    rng = np.random.default_rng(0)
    sub = {}
    for rep in range(4):
        ir = rng.choice(len(real), 250, replace=False)
        ig = rng.choice(len(gen), 750, replace=False)
        for k, v in scores(real[ir], gen[ig]).items():
            sub.setdefault(k, []).append(evaluate(y[ir], v)["auc"])
    for k, v in full.items():
        print(fmt(k, evaluate(y, v)) + f"  | sub250 AUC {np.mean(sub[k]):.4f}")
