"""Membership scores from nearest-neighbour similarities (higher score = more likely used)."""
from __future__ import annotations

import numpy as np


def max_similarity(sims_rg: np.ndarray) -> np.ndarray:
    """Similarity of each real image to its nearest generated image ([N, k] sorted descending -> [N])."""
    return np.asarray(sims_rg, dtype=np.float64)[:, 0]


def topk_mean(sims_rg: np.ndarray, k: int) -> np.ndarray:
    """Mean similarity to the k nearest generated images."""
    return np.asarray(sims_rg, dtype=np.float64)[:, :k].mean(axis=1)
