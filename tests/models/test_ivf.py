"""synthaudit.models.index: the approximate IVF index above a size threshold; exact search stays the default."""

from __future__ import annotations

import numpy as np
import pytest

from synthaudit.models.config import AuditConfig
from synthaudit.models.index import ivf_params, search


def clustered(n: int, d: int = 32, centres: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = rng.normal(size=(centres, d))
    return (means[rng.integers(0, centres, n)] + 0.3 * rng.normal(size=(n, d))).astype(np.float32)


def recall(approx: np.ndarray, exact: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(approx, exact)]))


def test_ivf_params_follow_sqrt_m() -> None:
    assert ivf_params(10_000) == (100, 25)
    assert ivf_params(1_000_000)[0] == 1000
    assert ivf_params(1) == (1, 1)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_ivf_recall_against_exact(metric: str) -> None:
    base, queries = clustered(4000), clustered(300, seed=1)
    exact = search(queries, base, 10, metric=metric)
    approx = search(queries, base, 10, metric=metric, ivf_min_size=1000)
    assert approx[1].shape == (300, 10)
    assert recall(approx[1], exact[1]) >= 0.9
    again = search(queries, base, 10, metric=metric, ivf_min_size=1000)
    np.testing.assert_array_equal(again[1], approx[1])  # seeded k-means: deterministic
    assert (np.diff(approx[0], axis=1) <= 1e-6).all()


def test_exact_below_the_threshold_and_by_default() -> None:
    base, queries = clustered(2000), clustered(50, seed=2)
    exact = search(queries, base, 5)
    for threshold in (None, 2001):
        got = search(queries, base, 5, ivf_min_size=threshold)
        np.testing.assert_array_equal(got[1], exact[1])
    assert AuditConfig().ivf_min_size == 1_000_000
    with pytest.raises(ValueError):
        AuditConfig(ivf_min_size=0)


def test_ivf_exclude_self_and_small_lists() -> None:
    base = clustered(1500)
    _sims, idx = search(base, base, 7, exclude_self=True, ivf_min_size=1)
    assert idx.shape == (1500, 7) and (idx >= 0).all()
    assert not (idx == np.arange(1500)[:, None]).any()
