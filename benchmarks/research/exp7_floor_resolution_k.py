"""Exp 7: make the whitened-pixel kNN-ratio recipe data-derived and size-agnostic.

(a) eigenvalue floor rules: eps*lambda_1 (eps=1e-3), mean eigenvalue, lambda at 99% / 99.9% cumulative
    variance; with all components kept.
(b) working resolution: 28 (native) vs 14 (area-downsampled) -- sensitivity to thumbnail size.
(c) K: fixed 10 vs K = ceil(frac * N_real); and robustness when only a subsample (N=250 real, 750 gen)
    is audited (mean over 4 random subsamples).
Run: .venv/bin/python benchmarks/research/exp7_floor_resolution_k.py
"""

import numpy as np
import torch
import torch.nn.functional as F
from common import FOLDERS, evaluate, knn_dists, l2n, load_folder


def ncc_vec(x):
    x = x.reshape(len(x), -1).astype(np.float32)
    return l2n(x - x.mean(1, keepdims=True))


def down(x, s):
    return F.adaptive_avg_pool2d(torch.from_numpy(x.astype(np.float32))[:, None], s)[:, 0].numpy()


def whiten(R, G, rule):
    X = np.concatenate([R, G])
    mu = X.mean(0)
    _, Sv, Vt = np.linalg.svd(X - mu, full_matrices=False)
    var = Sv**2 / len(X)
    cum = np.cumsum(var) / var.sum()
    floor = {
        "1e-3*l1": 1e-3 * var[0],
        "mean": var.mean(),
        "0.1*mean": 0.1 * var.mean(),
        "l@99%": var[np.searchsorted(cum, 0.99)],
        "l@99.9%": var[np.searchsorted(cum, 0.999)],
    }[rule]
    P = Vt / np.sqrt(var + floor)[:, None]
    return (R - mu) @ P.T, (G - mu) @ P.T


def ratio(dg, dr, K):
    return np.log(dr[:, :K]).mean(1) - np.log(dg[:, :K]).mean(1)


for f in FOLDERS:
    real, gen, y = load_folder(f)
    print("==", f)
    for res in (28, 14):
        r = real if res == 28 else down(real, res)
        g = gen if res == 28 else down(gen, res)
        R0, G0 = ncc_vec(r), ncc_vec(g)
        for rule in ("1e-3*l1", "mean", "0.1*mean", "l@99%", "l@99.9%"):
            a, b = whiten(R0, G0, rule)
            dg, dr = knn_dists(a, b, 30, "cos")
            print(
                f"res{res} floor={rule:8s} AUC K1 {evaluate(y, ratio(dg, dr, 1))['auc']:.4f}"
                f"  K5 {evaluate(y, ratio(dg, dr, 5))['auc']:.4f}  K10 {evaluate(y, ratio(dg, dr, 10))['auc']:.4f}"
                f"  K20 {evaluate(y, ratio(dg, dr, 20))['auc']:.4f}  K30 {evaluate(y, ratio(dg, dr, 30))['auc']:.4f}"
            )
    # subsample robustness
    rng = np.random.default_rng(0)
    out = {}
    for rep in range(4):
        ir = rng.choice(len(real), 250, replace=False)
        ig = rng.choice(len(gen), 750, replace=False)
        a, b = whiten(ncc_vec(real[ir]), ncc_vec(gen[ig]), "1e-3*l1")
        dg, dr = knn_dists(a, b, 30, "cos")
        for K in (1, 3, 5, 10, 20):
            out.setdefault(K, []).append(evaluate(y[ir], ratio(dg, dr, K))["auc"])
    print("subsample 250/750, floor 1e-3*l1: " + "  ".join(f"K{K} {np.mean(v):.4f}" for K, v in out.items()))
