"""Exp 12 (failure analysis): real sets with near-duplicate siblings, as adjacent CT slices of one patient.

Each real image gets S-1 siblings (1 px shift + Gaussian noise sigma=8 grey levels), same label, same group;
the generated set is unchanged. Scores: pixels (max NCC), w-ratio, w-attr, w-fused, with the real
reference either blind to groups or group-aware (same-group images are dropped from the real->real
neighbours and from the attribution's runner-up). The generator never saw the siblings, so only the
originals are scored (AUC over the 1,000 originals): this isolates what near-duplicates in the real
reference do to the normalisation.
Run: .venv/bin/python benchmarks/research/exp12_sibling_stress.py
"""

import sys
from pathlib import Path

import numpy as np
from common import FOLDERS, evaluate, fmt, load_folder

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from models import score as sc


def neigh(q, b, k, exclude_self=False):
    s = q.astype(np.float64) @ b.astype(np.float64).T
    if exclude_self:
        np.fill_diagonal(s, -np.inf)
    idx = np.argsort(-s, 1)[:, :k]
    return np.take_along_axis(s, idx, 1), idx


def drop_same_group(sims, idx, qgroups, bgroups, k):
    keep = bgroups[idx] != qgroups[:, None]
    order = np.argsort(~keep, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(sims, order, 1), np.take_along_axis(idx, order, 1)


def runner_up_other_group(sims, idx, groups):
    first_g = groups[idx[:, 0]]
    other = groups[idx] != first_g[:, None]
    other[:, 0] = True
    j = np.argmax(other[:, 1:], axis=1) + 1
    rows = np.arange(len(idx))
    return np.stack([sims[:, 0], sims[rows, j]], 1), np.stack([idx[:, 0], idx[rows, j]], 1)


rng = np.random.default_rng(0)
for f in FOLDERS:
    real0, gen, y0 = load_folder(f)
    for S in (1, 3):
        reps = [real0]
        for _ in range(S - 1):
            sh = np.roll(real0.astype(np.float32), rng.choice([-1, 1]), axis=rng.integers(1, 3))
            reps.append(np.clip(sh + rng.normal(size=real0.shape) * 8, 0, 255).astype(np.uint8))
        real = np.concatenate(reps)
        y = np.tile(y0, S)
        groups = np.tile(np.arange(len(real0)), S)
        N = len(real)
        K = sc.default_k(N)
        print(f"== {f}  group size {S}  N={N} K={K}")
        fr, fg = sc.ncc_vectors(real), sc.ncc_vectors(gen)
        o = slice(0, len(real0))
        print(fmt("pixels", evaluate(y[o], sc.max_similarity(neigh(fr, fg, 1)[0])[o])))
        w = sc.fit_whitening(np.concatenate([fr, fg]))
        wr, wg = sc.apply_whitening(fr, w), sc.apply_whitening(fg, w)
        rg, _ = neigh(wr, wg, K)
        rr, rri = neigh(wr, wr, K + S, exclude_self=True)
        gr, gri = neigh(wg, wr, 2 + S)
        for aware in (False, True):
            if aware:
                rr_, _ = drop_same_group(rr, rri, groups, groups, K)
                gr_, gi_ = runner_up_other_group(gr, gri, groups)
            else:
                rr_, gr_, gi_ = rr[:, :K], gr[:, :2], gri[:, :2]
            tag = "group-aware" if aware else "blind"
            a = sc.knn_log_ratio(rg, rr_, K)
            b = sc.attribution_margin(gr_, gi_, N)
            print(fmt(f"w-ratio {tag}", evaluate(y[o], a[o])))
            print(fmt(f"w-attr {tag}", evaluate(y[o], b[o])))
            print(fmt(f"w-fused {tag}", evaluate(y[o], sc.rank_fuse([a, b])[o])))
