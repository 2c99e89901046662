"""Exp 9: on top of the whitened-pixel kNN ratio (W28, K=round(N/100)): does anything add?
(a) rank fusion with W14 (whitened 14x14), the plain NCC ratio, the MAE-whitened ratio (if cached by exp6);
(b) per-image z-scoring of the whitened similarity row; (c) reverse nearest neighbours: how many generated
images have this real image as their nearest real (plus a margin-weighted version), alone and fused.
Run: .venv/bin/python benchmarks/research/exp9_fusion_reverse.py
"""

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from common import FOLDERS, evaluate, fmt, knn_dists, l2n, load_folder


def ncc_vec(x):
    x = x.reshape(len(x), -1).astype(np.float32)
    return l2n(x - x.mean(1, keepdims=True))


def down(x, s):
    return F.adaptive_avg_pool2d(torch.from_numpy(x.astype(np.float32))[:, None], s)[:, 0].numpy()


def whiten(R, G, eps=1e-3):
    X = np.concatenate([R, G])
    mu = X.mean(0)
    _, Sv, Vt = np.linalg.svd(X - mu, full_matrices=False)
    var = Sv**2 / len(X)
    P = Vt / np.sqrt(var + eps * var[0])[:, None]
    return l2n((R - mu) @ P.T), l2n((G - mu) @ P.T)


def ratio(dg, dr, K):
    return np.log(dr[:, :K]).mean(1) - np.log(dg[:, :K]).mean(1)


def rankn(s):
    return np.argsort(np.argsort(s)) / (len(s) - 1)


def fuse(*ss):
    return np.mean([rankn(s) for s in ss], 0)


for f in FOLDERS:
    real, gen, y = load_folder(f)
    N = len(real)
    K = max(1, round(N / 100))
    print("==", f, "K =", K)
    a, b = whiten(ncc_vec(real), ncc_vec(gen))
    dg, dr = knn_dists(a, b, 30, "cos")
    w28 = ratio(dg, dr, K)
    print(fmt("W28 ratio", evaluate(y, w28)))
    a14, b14 = whiten(ncc_vec(down(real, 14)), ncc_vec(down(gen, 14)))
    dg14, dr14 = knn_dists(a14, b14, 30, "cos")
    w14 = ratio(dg14, dr14, K)
    print(fmt("W14 ratio", evaluate(y, w14)))
    print(fmt("fuse W28+W14", evaluate(y, fuse(w28, w14))))
    dgn, drn = knn_dists(ncc_vec(real), ncc_vec(gen), 30, "cos")
    n28 = ratio(dgn, drn, K)
    print(fmt("fuse W28+NCC ratio", evaluate(y, fuse(w28, n28))))
    print(fmt("fuse W28+pixels max", evaluate(y, fuse(w28, -dgn[:, 0]))))
    cache = Path(f"/tmp/sa_mae_{f}.npz")
    if cache.exists():
        z = np.load(cache)
        am, bm = whiten(z["Fr"], z["Fg"])
        dgm, drm = knn_dists(am, bm, 30, "cos")
        m = ratio(dgm, drm, K)
        print(fmt("MAE whitened ratio", evaluate(y, m)))
        print(fmt("fuse W28+MAE", evaluate(y, fuse(w28, m))))
    # z-score of whitened sims
    S = a @ b.T
    z = (S.max(1) - S.mean(1)) / S.std(1)
    print(fmt("W28 zscore of max", evaluate(y, z)))
    # reverse NN: gens whose nearest real is x
    Sgr = b @ a.T  # [M, N]
    top2 = np.argsort(-Sgr, 1)[:, :2]
    s1 = Sgr[np.arange(len(b)), top2[:, 0]]
    s2 = Sgr[np.arange(len(b)), top2[:, 1]]
    d1 = np.sqrt(np.maximum(2 - 2 * s1, 1e-12))
    d2 = np.sqrt(np.maximum(2 - 2 * s2, 1e-12))
    cnt = np.bincount(top2[:, 0], minlength=N)
    marg = np.bincount(top2[:, 0], weights=np.log(d2 / d1), minlength=N)
    print(fmt("reverse-NN count", evaluate(y, cnt + 1e-6 * w28)))
    print(fmt("reverse-NN margin sum", evaluate(y, marg + 1e-6 * w28)))
    print(fmt("fuse W28+reverse margin", evaluate(y, fuse(w28, marg + 1e-6 * w28))))
