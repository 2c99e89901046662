"""Exp 3: which pixel-level representation makes the kNN density-ratio score best.

Representations (all computed from the audit's own images, no labels): per-image NCC vectors at full
resolution, Gaussian-blurred, area-downsampled, PCA-whitened (PCA fitted on real+generated) with
d components, and image gradients. Each is scored with score_suite (common.py).
Run: .venv/bin/python benchmarks/research/exp3_representations.py
"""

import numpy as np
import torch
import torch.nn.functional as F
from common import FOLDERS, evaluate, fmt, knn_dists, l2n, load_folder, score_suite


def ncc_vec(x):
    x = x.reshape(len(x), -1).astype(np.float32)
    return l2n(x - x.mean(1, keepdims=True))


def blur(x, sigma):
    t = torch.from_numpy(x.astype(np.float32))[:, None]
    r = int(3 * sigma + 0.5)
    g = torch.exp(-(torch.arange(-r, r + 1) ** 2) / (2 * sigma**2))
    g /= g.sum()
    t = F.conv2d(F.pad(t, (r, r, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    t = F.conv2d(F.pad(t, (0, 0, r, r), mode="reflect"), g.view(1, 1, -1, 1))
    return t[:, 0].numpy()


def down(x, s):
    t = torch.from_numpy(x.astype(np.float32))[:, None]
    return F.adaptive_avg_pool2d(t, s)[:, 0].numpy()


def pca_white(R, G, d, eps_rel=1e-3):
    X = np.concatenate([R, G])
    mu = X.mean(0)
    _U, Sv, Vt = np.linalg.svd(X - mu, full_matrices=False)
    var = Sv**2 / len(X)
    P = Vt[:d] / np.sqrt(var[:d] + eps_rel * var[0])[:, None]
    return (R - mu) @ P.T, (G - mu) @ P.T


def grad(x):
    x = x.astype(np.float32)
    gx = np.diff(x, axis=2, append=x[:, :, -1:])
    gy = np.diff(x, axis=1, append=x[:, -1:, :])
    return np.concatenate([gx.reshape(len(x), -1), gy.reshape(len(x), -1)], 1)


KEYS = [
    "max(-dg1)",
    "log dr1-log dg1",
    "log dr3-log dg1",
    "mean_k<=3 log dr-log dg",
    "mean_k<=10 log dr-log dg",
]
for f in FOLDERS:
    real, gen, y = load_folder(f)
    print("==", f)
    reps = {
        "ncc": (ncc_vec(real), ncc_vec(gen), "cos"),
        "ncc blur0.7": (ncc_vec(blur(real, 0.7)), ncc_vec(blur(gen, 0.7)), "cos"),
        "ncc blur1.5": (ncc_vec(blur(real, 1.5)), ncc_vec(blur(gen, 1.5)), "cos"),
        "ncc down14": (ncc_vec(down(real, 14)), ncc_vec(down(gen, 14)), "cos"),
        "ncc down7": (ncc_vec(down(real, 7)), ncc_vec(down(gen, 7)), "cos"),
        "grad ncc": (l2n(grad(real)), l2n(grad(gen)), "cos"),
    }
    R0, G0 = ncc_vec(real), ncc_vec(gen)
    for d in (16, 32, 64, 128, 256):
        a, b = pca_white(R0, G0, d)
        reps[f"pca-white{d} l2"] = (a, b, "l2")
        reps[f"pca-white{d} cos"] = (a, b, "cos")
    for name, (a, b, m) in reps.items():
        dg, dr = knn_dists(a, b, 20, m)
        sc = score_suite(dg, dr)
        for k in KEYS:
            print(fmt(f"{name} | {k}", evaluate(y, sc[k])))
