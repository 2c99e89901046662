"""Exp 2: DOMIAS-style kNN density ratio on raw pixels; k choice and set-size matching.

score = log d_real(k_r) - log d_gen(k_g) (distance to k_r-th nearest other real / k_g-th nearest generated),
with k_g = round(k_r * M / (N-1)) (equal-probability-mass neighbourhoods) or k_g = k_r. Also the averaged
log ratio over several k and the Monte Carlo count-within-radius attack.
Run: .venv/bin/python benchmarks/research/exp2_density_ratio.py
"""

import numpy as np
from common import FOLDERS, evaluate, fmt, load_folder


def l2n(x):
    return x / (np.linalg.norm(x, axis=1, keepdims=True) + 1e-8)


for f in FOLDERS:
    real, gen, y = load_folder(f)
    N, M = len(real), len(gen)
    print("==", f)
    R = real.reshape(N, -1).astype(np.float32)
    G = gen.reshape(M, -1).astype(np.float32)
    R = l2n(R - R.mean(1, keepdims=True))
    G = l2n(G - G.mean(1, keepdims=True))
    S = R @ G.T
    Srr = R @ R.T
    np.fill_diagonal(Srr, -np.inf)
    dg = np.sort(np.sqrt(np.maximum(2 - 2 * S, 1e-12)), 1)
    dr = np.sort(np.sqrt(np.maximum(2 - 2 * Srr, 1e-12)), 1)
    ratio = M / (N - 1)
    for kr in (1, 2, 3, 5, 10):
        kg = max(1, round(kr * ratio))
        print(fmt(f"kr={kr} kg={kg} (matched)", evaluate(y, np.log(dr[:, kr - 1]) - np.log(dg[:, kg - 1]))))
        print(fmt(f"kr={kr} kg={kr} (same k)", evaluate(y, np.log(dr[:, kr - 1]) - np.log(dg[:, kr - 1]))))
    for K in (3, 5, 10):
        sc = np.mean(
            [np.log(dr[:, k - 1]) - np.log(dg[:, max(1, round(k * ratio)) - 1]) for k in range(1, K + 1)],
            0,
        )
        print(fmt(f"mean log ratio k_r=1..{K} matched", evaluate(y, sc)))
        sc = np.log(dr[:, :K]).mean(1) - np.log(dg[:, :K]).mean(1)
        print(fmt(f"mean log d k=1..{K} same k", evaluate(y, sc)))
    # Monte Carlo attack: count of generated within radius eps, eps = quantile q of gen->real NN distances
    for q in (0.01, 0.05, 0.1, 0.25):
        eps = np.quantile(dg[:, 0], q)
        cnt = (dg < eps).sum(1)
        print(fmt(f"MC count r=q{q} of real->gen NN", evaluate(y, cnt + 1e-3 * -dg[:, 0])))
    # count ratio within radius: gen count / real count (DOMIAS with fixed radius)
    for q in (0.05, 0.25, 0.5):
        eps = np.quantile(dg[:, 0], q)
        sc = np.log((dg < eps).sum(1) / M + 1 / M) - np.log((dr < eps).sum(1) / (N - 1) + 1 / (N - 1))
        print(fmt(f"radius count ratio q{q}", evaluate(y, sc)))
