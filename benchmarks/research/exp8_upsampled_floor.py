"""Exp 8: is the eigenvalue-floor rule resolution-robust? Bilinearly upsample the 28x28 images to 56x56
(same information, 4x the dimensions, a fast-decaying tail like smooth CT thumbnails) and compare floor
rules; a good rule should keep the 28x28 AUC. Also times the PCA at D=3136.
Run: .venv/bin/python benchmarks/research/exp8_upsampled_floor.py
"""

import time

import numpy as np
import torch
import torch.nn.functional as F
from common import FOLDERS, evaluate, knn_dists, l2n, load_folder


def ncc_vec(x):
    x = x.reshape(len(x), -1).astype(np.float32)
    return l2n(x - x.mean(1, keepdims=True))


def up(x, s):
    return F.interpolate(
        torch.from_numpy(x.astype(np.float32))[:, None], size=(s, s), mode="bilinear", align_corners=False
    )[:, 0].numpy()


def ratio(dg, dr, K):
    return np.log(dr[:, :K]).mean(1) - np.log(dg[:, :K]).mean(1)


for f in FOLDERS:
    real, gen, y = load_folder(f)
    print("==", f)
    r, g = up(real, 56), up(gen, 56)
    R0, G0 = ncc_vec(r), ncc_vec(g)
    t = time.perf_counter()
    X = np.concatenate([R0, G0])
    mu = X.mean(0)
    C = (X - mu).T @ (X - mu) / len(X)
    var, V = np.linalg.eigh(C.astype(np.float64))
    var = var[::-1].clip(0)
    V = V[:, ::-1]
    print(f"PCA via covariance eigh, D={X.shape[1]}: {time.perf_counter() - t:.1f}s")
    cum = np.cumsum(var) / var.sum()
    for rule, floor in (
        ("1e-3*l1", 1e-3 * var[0]),
        ("1e-4*l1", 1e-4 * var[0]),
        ("mean", var.mean()),
        ("0.1*mean", 0.1 * var.mean()),
        ("l@99%", var[np.searchsorted(cum, 0.99)]),
        ("l@99.9%", var[np.searchsorted(cum, 0.999)]),
    ):
        P = (V / np.sqrt(var + floor)).astype(np.float32)
        dg, dr = knn_dists((R0 - mu) @ P, (G0 - mu) @ P, 20, "cos")
        print(
            f"up56 floor={rule:8s} AUC K1 {evaluate(y, ratio(dg, dr, 1))['auc']:.4f}"
            f"  K10 {evaluate(y, ratio(dg, dr, 10))['auc']:.4f}  K20 {evaluate(y, ratio(dg, dr, 20))['auc']:.4f}"
        )
