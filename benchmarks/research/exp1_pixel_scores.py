"""Exp 1: score functions on raw-pixel similarities (no alignment).

Measures, per folder, AUC / TPR@1%FPR / F1(cv) / F1(median) for: max cosine (baseline `pixels`),
top-k mean, reference-normalised (gen NN minus real NN), DOMIAS-style kNN distance ratio, per-image
z-score, and representation variants (global-mean-centred cosine, per-image Pearson/NCC, euclidean).
Run: .venv/bin/python benchmarks/research/exp1_pixel_scores.py
"""

import numpy as np
from common import FOLDERS, evaluate, fmt, load_folder


def l2n(x):
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)


def reps(real, gen):
    R = real.reshape(len(real), -1).astype(np.float32) / 255
    G = gen.reshape(len(gen), -1).astype(np.float32) / 255
    mu = np.concatenate([R, G]).mean(0)
    out = {}
    out["cos_centred"] = (l2n(R - mu), l2n(G - mu))
    out["ncc"] = (l2n(R - R.mean(1, keepdims=True)), l2n(G - G.mean(1, keepdims=True)))
    out["cos_raw"] = (l2n(R), l2n(G))
    return out, R, G


def sq_dist(A, B):
    return (A * A).sum(1)[:, None] + (B * B).sum(1)[None] - 2 * A @ B.T


for f in FOLDERS:
    real, gen, y = load_folder(f)
    print("==", f)
    rep, R, G = reps(real, gen)
    for name, (a, b) in rep.items():
        S = a @ b.T
        Srr = a @ a.T
        np.fill_diagonal(Srr, -np.inf)
        Ss = -np.sort(-S, 1)
        Srs = -np.sort(-Srr, 1)
        print(fmt(f"{name} max", evaluate(y, Ss[:, 0])))
        for k in (3, 10):
            print(fmt(f"{name} top{k}mean", evaluate(y, Ss[:, :k].mean(1))))
        print(fmt(f"{name} gen1-real1", evaluate(y, Ss[:, 0] - Srs[:, 0])))
        for k in (1, 3, 5, 10):
            # distances from cosine: d = sqrt(2-2s)
            dg = np.sqrt(np.maximum(2 - 2 * Ss[:, k - 1], 1e-12))
            dr = np.sqrt(np.maximum(2 - 2 * Srs[:, k - 1], 1e-12))
            print(fmt(f"{name} log dr{k}/dg{k}", evaluate(y, np.log(dr) - np.log(dg))))
        # sample-size-matched: k-th NN in gen scaled by set size: compare gen k*3 vs real k
        z = (Ss[:, 0] - S.mean(1)) / S.std(1)
        print(fmt(f"{name} zscore", evaluate(y, z)))
        zr = (Srs[:, 0] - Srr[:, :].clip(-1, 1).mean(1)) / Srr.clip(-1, 1).std(1)
        print(fmt(f"{name} zgen-zreal", evaluate(y, z - zr)))
    D = sq_dist(R, G)
    print(fmt("euclid min", evaluate(y, -np.sort(D, 1)[:, 0])))
