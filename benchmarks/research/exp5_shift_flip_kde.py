"""Exp 5: does alignment tolerance help? And kernel-density ratio vs kNN ratio.

(a) NCC on central crops with the real image shifted by up to +-s px (max over shifts per pair), and
    horizontal flips; scored by max and by the kNN log-ratio (K=1,10) with the same shift tolerance on
    the real->real side.
(b) whitened space: PCA fitted on real+gen / gen only / real only.
(c) KDE log-ratio with a softmax temperature from the data (median NN cosine distance).
Run: .venv/bin/python benchmarks/research/exp5_shift_flip_kde.py
"""

import numpy as np
from common import FOLDERS, evaluate, fmt, l2n, load_folder


def ncc_vec(x):
    x = x.reshape(len(x), -1).astype(np.float32)
    return l2n(x - x.mean(1, keepdims=True))


def shifted_sims(real, other, s, m, flip=False, self_excl=False):
    """max over shifts |dx|,|dy|<=s of NCC(real crop shifted, other central crop); crops margin m>=s."""
    S_ = real.shape[1]
    Oc = ncc_vec(other[:, m : S_ - m, m : S_ - m])
    best = None
    variants = [real] + ([real[:, :, ::-1]] if flip else [])
    for v in variants:
        for dx in range(-s, s + 1):
            for dy in range(-s, s + 1):
                Rc = ncc_vec(v[:, m + dy : S_ - m + dy, m + dx : S_ - m + dx])
                S = Rc @ Oc.T
                best = S if best is None else np.maximum(best, S)
    if self_excl:
        np.fill_diagonal(best, -np.inf)
    return best


def ratio(Sg, Sr, K):
    dg = np.sort(np.sqrt(np.maximum(2 - 2 * Sg, 1e-12)), 1)[:, :K]
    dr = np.sort(np.sqrt(np.maximum(2 - 2 * Sr, 1e-12)), 1)[:, :K]
    return np.log(dr).mean(1) - np.log(dg).mean(1)


def whiten(fit, *xs, eps=1e-3):
    mu = fit.mean(0)
    _, Sv, Vt = np.linalg.svd(fit - mu, full_matrices=False)
    var = Sv**2 / len(fit)
    P = Vt / np.sqrt(var + eps * var[0])[:, None]
    return [l2n((x - mu) @ P.T) for x in xs]


for f in FOLDERS:
    real, gen, y = load_folder(f)
    print("==", f)
    for s, flip in ((0, False), (1, False), (2, False), (0, True), (1, True)):
        Sg = shifted_sims(real, gen, s, 2, flip)
        Sr = shifted_sims(real, real, s, 2, flip, True)
        print(fmt(f"crop-NCC shift{s} flip{flip} max", evaluate(y, Sg.max(1))))
        for K in (1, 10):
            print(fmt(f"crop-NCC shift{s} flip{flip} ratio K{K}", evaluate(y, ratio(Sg, Sr, K))))
    R0, G0 = ncc_vec(real), ncc_vec(gen)
    for fitname, fit in (("real+gen", np.concatenate([R0, G0])), ("gen", G0), ("real", R0)):
        a, b = whiten(fit, R0, G0)
        Sg = a @ b.T
        Sr = a @ a.T
        np.fill_diagonal(Sr, -np.inf)
        for K in (1, 10):
            print(fmt(f"white fit={fitname} ratio K{K}", evaluate(y, ratio(Sg, Sr, K))))
        if fitname == "real+gen":
            # KDE ratio with temperature = median NN cosine distance (gen side)
            d1 = 1 - Sg.max(1)
            for mult in (0.5, 1, 2):
                tau = mult * np.median(d1)
                lg = (
                    np.log(np.exp((Sg - Sg.max(1, keepdims=True)) / tau).sum(1))
                    + Sg.max(1) / tau
                    - np.log(Sg.shape[1])
                )
                Srr = np.where(np.isfinite(Sr), Sr, -1e9)
                lr = (
                    np.log(np.exp((Srr - Srr.max(1, keepdims=True)) / tau).sum(1))
                    + Srr.max(1) / tau
                    - np.log(Sr.shape[1] - 1)
                )
                print(fmt(f"white KDE ratio tau={mult}*median", evaluate(y, lg - lr)))
