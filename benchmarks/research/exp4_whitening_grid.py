"""Exp 4: PCA-whitened cosine space (PCA on real+generated, no labels): dimensionality d and the
eigenvalue floor eps (lambda_i + eps*lambda_1), crossed with the kNN score's K. Looking for a plateau
and a data-derived rule for d / eps, not a per-folder optimum.
Run: .venv/bin/python benchmarks/research/exp4_whitening_grid.py
"""

import numpy as np
from common import FOLDERS, evaluate, knn_dists, l2n, load_folder


def ncc_vec(x):
    x = x.reshape(len(x), -1).astype(np.float32)
    return l2n(x - x.mean(1, keepdims=True))


res = {}
for f in FOLDERS:
    real, gen, y = load_folder(f)
    R0, G0 = ncc_vec(real), ncc_vec(gen)
    X = np.concatenate([R0, G0])
    mu = X.mean(0)
    U, Sv, Vt = np.linalg.svd(X - mu, full_matrices=False)
    var = Sv**2 / len(X)
    cum = np.cumsum(var) / var.sum()
    print(
        f,
        "dims for 90/95/99/99.9% var:",
        [int(np.searchsorted(cum, q)) + 1 for q in (0.9, 0.95, 0.99, 0.999)],
    )
    for d in (128, 256, 384, 512, 784):
        for eps in (0.0, 1e-4, 1e-3, 1e-2):
            P = Vt[:d] / np.sqrt(var[:d] + eps * var[0] + 1e-12)[:, None]
            a, b = (R0 - mu) @ P.T, (G0 - mu) @ P.T
            dg, dr = knn_dists(a, b, 20, "cos")
            for K in (1, 3, 10, 20):
                s = np.log(dr[:, :K]).mean(1) - np.log(dg[:, :K]).mean(1)
                res[(f, d, eps, K)] = evaluate(y, s)["auc"]
            res[(f, d, eps, "max")] = evaluate(y, -dg[:, 0])["auc"]
print(f"{'d':>4} {'eps':>6} " + " ".join(f"{K!s:>17}" for K in (1, 3, 10, 20, "max")))
for d in (128, 256, 384, 512, 784):
    for eps in (0.0, 1e-4, 1e-3, 1e-2):
        row = []
        for K in (1, 3, 10, 20, "max"):
            a, b = res[(FOLDERS[0], d, eps, K)], res[(FOLDERS[1], d, eps, K)]
            row.append(f"{a:.3f}/{b:.3f}={(a + b) / 2:.3f}")
        print(f"{d:4d} {eps:6.0e} " + " ".join(row))
