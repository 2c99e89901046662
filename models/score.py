"""Membership scores from nearest-neighbour similarities (higher score = more likely used).

Conventions: similarity arrays are "higher = closer" and each row is sorted descending.
``sims_rg`` [N, k]: real -> generated; ``sims_rr`` [N, k]: real -> other real images (self excluded);
``sims_gr`` [M, k] / ``idx_gr`` [M, k]: generated -> real (indices into the real set).
For ``metric="cosine"`` similarities are inner products of L2-normalised vectors (distance
sqrt(2 - 2s)); for "euclidean"/"manhattan" they are negated distances (as models/index.py returns).

The default recipe (docs/research.md): per-image NCC pixel vectors, PCA-whitened with
a whitening fitted on the audit's own images (real + generated, no labels), cosine; score =
rank_fuse([knn_log_ratio(sims_rg, sims_rr, default_k(N)), attribution_margin(sims_gr, idx_gr, N)]).
Everything here is pure numpy.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

DISTANCE_METRICS = ("cosine", "euclidean", "manhattan")
# Distances are floored at this fraction of the median positive distance before taking logs, so an
# exact copy (distance 0) gives a large finite score instead of infinity.
RELATIVE_DISTANCE_FLOOR = 1e-6
# Eigenvalue floor of the whitening, relative to the largest eigenvalue (caps the condition number).
WHITENING_FLOOR = 1e-3
# Neighbourhood size of the kNN density ratio: this fraction of the real set (at least 1).
K_FRACTION = 0.01


# ---------------------------------------------------------------- simple scores
def max_similarity(sims_rg: np.ndarray) -> np.ndarray:
    """Similarity of each real image to its nearest generated image ([N, k] sorted descending -> [N])."""
    return np.asarray(sims_rg, dtype=np.float64)[:, 0]


def topk_mean(sims_rg: np.ndarray, k: int) -> np.ndarray:
    """Mean similarity to the k nearest generated images."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    return np.asarray(sims_rg, dtype=np.float64)[:, :k].mean(axis=1)


def reference_normalised(sims_rg: np.ndarray, sims_rr: np.ndarray) -> np.ndarray:
    """Similarity to the nearest generated image minus similarity to the nearest other real image."""
    return np.asarray(sims_rg, dtype=np.float64)[:, 0] - np.asarray(sims_rr, dtype=np.float64)[:, 0]


# ---------------------------------------------------------------- density ratio and attribution
def similarity_to_distance(sims: np.ndarray, metric: str = "cosine") -> np.ndarray:
    """Turn similarities (higher = closer) back into non-negative distances."""
    if metric not in DISTANCE_METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(DISTANCE_METRICS)}")
    s = np.asarray(sims, dtype=np.float64)
    if metric == "cosine":
        return np.sqrt(np.clip(2.0 - 2.0 * s, 0.0, None))
    return np.clip(-s, 0.0, None)


def _floored_log(*distances: np.ndarray) -> list[np.ndarray]:
    """log of each array, all floored at RELATIVE_DISTANCE_FLOOR x their joint median positive distance."""
    finite = np.concatenate([d[np.isfinite(d)].ravel() for d in distances])
    positive = finite[finite > 0]
    scale = float(np.median(positive)) if positive.size else 1.0
    floor = RELATIVE_DISTANCE_FLOOR * scale
    return [np.log(np.maximum(d, floor)) for d in distances]


def default_k(n_real: int) -> int:
    """Neighbourhood size for knn_log_ratio: round(K_FRACTION * n_real), at least 1."""
    return max(1, round(K_FRACTION * int(n_real)))


def knn_log_ratio(sims_rg: np.ndarray, sims_rr: np.ndarray, k: int, metric: str = "cosine") -> np.ndarray:
    """kNN density ratio log p_gen/p_real (DOMIAS-style): mean_j<k log d_rr[j] - mean_j<k log d_rg[j]."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    rg, rr = np.asarray(sims_rg), np.asarray(sims_rr)
    if rg.ndim != 2 or rr.ndim != 2 or rg.shape[0] != rr.shape[0]:
        raise ValueError(f"sims_rg {rg.shape} and sims_rr {rr.shape} must be [N, k] with the same N")
    k_eff = min(k, rg.shape[1], rr.shape[1])
    if k_eff < 1:
        raise ValueError("need at least one neighbour on each side")
    d_rg = similarity_to_distance(rg[:, :k_eff], metric)
    d_rr = similarity_to_distance(rr[:, :k_eff], metric)
    log_rg, log_rr = _floored_log(d_rg, d_rr)
    return log_rr.mean(axis=1) - log_rg.mean(axis=1)


def attribution_margin(
    sims_gr: np.ndarray, idx_gr: np.ndarray, n_real: int, metric: str = "cosine"
) -> np.ndarray:
    """Each generated image votes log(d2/d1) for its nearest real image; a real image's score is its vote sum."""
    s, idx = np.asarray(sims_gr), np.asarray(idx_gr)
    if s.shape != idx.shape or s.ndim != 2:
        raise ValueError(f"sims_gr {s.shape} and idx_gr {idx.shape} must both be [M, k]")
    out = np.zeros(int(n_real), dtype=np.float64)
    if s.shape[0] == 0 or s.shape[1] < 2:
        return out
    if idx.min() < 0 or idx.max() >= n_real:
        raise ValueError("idx_gr holds indices outside the real set")
    log_d1, log_d2 = _floored_log(
        similarity_to_distance(s[:, 0], metric), similarity_to_distance(s[:, 1], metric)
    )
    return np.bincount(idx[:, 0], weights=log_d2 - log_d1, minlength=int(n_real)).astype(np.float64)


# ---------------------------------------------------------------- fusion
def normalised_ranks(scores: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1] (ties share their average rank; a single value maps to 0.5)."""
    s = np.asarray(scores, dtype=np.float64)
    n = s.shape[0]
    if n == 1:
        return np.full(1, 0.5)
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(n, dtype=np.float64)
    ranks[order] = np.arange(n, dtype=np.float64)
    _, inverse, counts = np.unique(s, return_inverse=True, return_counts=True)
    ranks = (np.bincount(inverse, weights=ranks) / counts)[inverse]
    return ranks / (n - 1)


def rank_fuse(scores: Sequence[np.ndarray], weights: Sequence[float] | None = None) -> np.ndarray:
    """Weighted mean of normalised ranks of several score arrays of the same length."""
    if len(scores) == 0:
        raise ValueError("rank_fuse needs at least one score array")
    n = len(scores[0])
    if any(len(s) != n for s in scores):
        raise ValueError("all score arrays must have the same length")
    w = np.ones(len(scores)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(scores),) or (w < 0).any() or w.sum() <= 0:
        raise ValueError("weights must be non-negative, one per score array, not all zero")
    return np.sum([wi * normalised_ranks(s) for wi, s in zip(w, scores)], axis=0) / w.sum()


def density_attribution_score(
    sims_rg: np.ndarray,
    sims_rr: np.ndarray,
    sims_gr: np.ndarray,
    idx_gr: np.ndarray,
    k: int | None = None,
    metric: str = "cosine",
) -> np.ndarray:
    """The default score: rank_fuse of knn_log_ratio (k = default_k(N) unless given) and attribution_margin."""
    n = np.asarray(sims_rg).shape[0]
    kk = default_k(n) if k is None else k
    return rank_fuse(
        [knn_log_ratio(sims_rg, sims_rr, kk, metric), attribution_margin(sims_gr, idx_gr, n, metric)]
    )


# ---------------------------------------------------------------- features: NCC vectors and whitening
def ncc_vectors(images: np.ndarray) -> np.ndarray:
    """uint8/float images [N, H, W] -> float32 [N, H*W], each mean-centred and L2-normalised."""
    x = np.asarray(images, dtype=np.float32).reshape(len(images), -1)
    x = x - x.mean(axis=1, keepdims=True)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norm, 1e-12)


class Whitening(NamedTuple):
    """A fitted PCA whitening: x -> ((x - mean) @ components) / scale, in float64."""

    mean: np.ndarray  # [D]
    components: np.ndarray  # [D, r] orthonormal columns
    scale: np.ndarray  # [r] sqrt(eigenvalue + floor)
    residual_scale: float  # sqrt(floor): applied to the part outside the components' span (r < D)


def fit_whitening(features: np.ndarray, floor: float = WHITENING_FLOOR) -> Whitening:
    """Fit a PCA whitening on features [n, D]; eigenvalues are floored at floor x the largest one."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need features [n >= 2, D], got {x.shape}")
    if floor <= 0:
        raise ValueError("floor must be positive")
    n, d = x.shape
    mean = x.mean(axis=0)
    xc = x - mean
    if d <= n:  # covariance route
        eigval, eigvec = np.linalg.eigh(xc.T @ xc / n)
    else:  # Gram route: only n directions carry variance
        eigval, u = np.linalg.eigh(xc @ xc.T / n)
        keep = eigval > eigval.max() * 1e-12
        eigval, u = eigval[keep], u[:, keep]
        eigvec = xc.T @ u / np.sqrt(n * eigval)
    order = np.argsort(eigval)[::-1]
    eigval, eigvec = np.clip(eigval[order], 0.0, None), eigvec[:, order]
    top = float(eigval[0]) if eigval.size and eigval[0] > 0 else 1.0
    fl = floor * top
    return Whitening(mean, eigvec, np.sqrt(eigval + fl), float(np.sqrt(fl)))


def apply_whitening(features: np.ndarray, whitening: Whitening) -> np.ndarray:
    """Whiten features [N, D] and L2-normalise each row (float32 [N, r], or [N, D] when r < D)."""
    x = np.asarray(features, dtype=np.float64) - whitening.mean
    proj = x @ whitening.components
    if whitening.components.shape[1] < whitening.components.shape[0]:  # keep the floored residual
        out = proj @ (whitening.components / whitening.scale).T + (x - proj @ whitening.components.T) / (
            whitening.residual_scale
        )
    else:
        out = proj / whitening.scale
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)
    return out.astype(np.float32)


# ---------------------------------------------------------------- alignment-tolerant re-ranking
def shift_tolerant_ncc(
    real: np.ndarray, generated: np.ndarray, candidates: np.ndarray, max_shift: int, batch: int = 256
) -> np.ndarray:
    """Best NCC over candidates and shifts |dx|,|dy| <= max_shift (central crops) for each real image."""
    r, g, cand = np.asarray(real), np.asarray(generated), np.asarray(candidates, dtype=np.int64)
    if r.ndim != 3 or g.ndim != 3 or r.shape[1:] != g.shape[1:]:
        raise ValueError(f"real {r.shape} and generated {g.shape} must be [N, S, S] of the same size")
    if cand.ndim != 2 or cand.shape[0] != r.shape[0] or cand.shape[1] < 1:
        raise ValueError(f"candidates must be [N, c >= 1], got {cand.shape}")
    h, w = r.shape[1:]
    m = int(max_shift)
    if m < 0 or 2 * m >= min(h, w):
        raise ValueError(f"max_shift {max_shift} does not fit images of size {h}x{w}")
    real_crop = ncc_vectors(r[:, m : h - m, m : w - m])  # [N, P]
    best = np.full(r.shape[0], -np.inf)
    for dy in range(-m, m + 1):
        for dx in range(-m, m + 1):
            gen_crop = g[:, m + dy : h - m + dy, m + dx : w - m + dx]
            for start in range(0, r.shape[0], batch):
                rows = slice(start, start + batch)
                gc = ncc_vectors(gen_crop[cand[rows].ravel()]).reshape(*cand[rows].shape, -1)
                sims = np.einsum("np,ncp->nc", real_crop[rows], gc).max(axis=1)
                best[rows] = np.maximum(best[rows], sims)
    return best
