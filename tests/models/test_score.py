"""synthaudit.models.score: membership scores from neighbour similarities, whitening, rank fusion, shift-tolerant NCC."""

from __future__ import annotations

import numpy as np
import pytest

from synthaudit.models import score as sc


def dense_neighbours(q: np.ndarray, b: np.ndarray, k: int, exclude_self: bool = False):
    """Brute-force cosine neighbours of L2-normalised rows: (sims [N, k] descending, idx [N, k])."""
    s = q.astype(np.float64) @ b.astype(np.float64).T
    if exclude_self:
        np.fill_diagonal(s, -np.inf)
    idx = np.argsort(-s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, idx, 1), idx


def auc(y: np.ndarray, s: np.ndarray) -> float:
    pos, neg = s[y == 1], s[y == 0]
    return float(
        ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    )


def unit(*rows: list[float]) -> np.ndarray:
    x = np.asarray(rows, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# ---------------------------------------------------------------- simple scores
def test_max_similarity_and_topk_mean() -> None:
    sims = np.array([[0.9, 0.5, 0.1], [0.3, 0.2, 0.1]])
    np.testing.assert_allclose(sc.max_similarity(sims), [0.9, 0.3])
    np.testing.assert_allclose(sc.topk_mean(sims, 2), [0.7, 0.25])
    with pytest.raises(ValueError):
        sc.topk_mean(sims, 0)


def test_reference_normalised_subtracts_nearest_real() -> None:
    np.testing.assert_allclose(
        sc.reference_normalised(np.array([[0.9], [0.8]]), np.array([[0.95], [0.2]])), [-0.05, 0.6]
    )


def test_similarity_to_distance() -> None:
    np.testing.assert_allclose(sc.similarity_to_distance(np.array([1.0, 0.0, -1.0])), [0.0, np.sqrt(2), 2.0])
    np.testing.assert_allclose(sc.similarity_to_distance(np.array([-3.0, -0.5]), "euclidean"), [3.0, 0.5])
    with pytest.raises(ValueError, match="unknown metric"):
        sc.similarity_to_distance(np.zeros(2), "hamming")


# ---------------------------------------------------------------- density ratio
def test_default_k_scales_with_the_real_set() -> None:
    assert sc.default_k(10) == 1 and sc.default_k(1000) == 10 and sc.default_k(6000) == 60


def test_knn_log_ratio_matches_hand_computation() -> None:
    # euclidean similarities are negated distances
    rg = -np.array([[1.0, 2.0], [4.0, 4.0]])
    rr = -np.array([[2.0, 8.0], [2.0, 2.0]])
    got = sc.knn_log_ratio(rg, rr, 2, metric="euclidean")
    want = [np.log(2 * 8) / 2 - np.log(1 * 2) / 2, np.log(2) - np.log(4)]
    np.testing.assert_allclose(got, want)
    np.testing.assert_allclose(sc.knn_log_ratio(rg, rr, 1, metric="euclidean"), [np.log(2), np.log(0.5)])


def test_knn_log_ratio_corrects_for_typical_images() -> None:
    """A typical image (many close reals) with a close generated match scores below an atypical one
    whose generated match is a bit further but much closer than any other real image."""
    rg = np.array([[0.99], [0.97]])  # cosine: typical image is closer to a generated one
    rr = np.array([[0.995], [0.50]])  # ... but also very close to another real image
    assert sc.max_similarity(rg)[0] > sc.max_similarity(rg)[1]
    ratio = sc.knn_log_ratio(rg, rr, 1)
    assert ratio[1] > ratio[0]


def test_knn_log_ratio_exact_copy_is_finite_and_top() -> None:
    rg = np.array([[1.0, 0.5], [0.9, 0.5], [0.8, 0.7]])
    rr = np.array([[0.6, 0.5], [0.6, 0.5], [0.6, 0.5]])
    s = sc.knn_log_ratio(rg, rr, 1)
    assert np.isfinite(s).all() and s.argmax() == 0


def test_knn_log_ratio_validates_shapes() -> None:
    with pytest.raises(ValueError):
        sc.knn_log_ratio(np.zeros((3, 2)), np.zeros((4, 2)), 1)
    with pytest.raises(ValueError):
        sc.knn_log_ratio(np.zeros((3, 2)), np.zeros((3, 2)), 0)


# ---------------------------------------------------------------- attribution
def test_attribution_margin_sums_votes_per_nearest_real() -> None:
    # three generated images (euclidean): two attributed to real 1, one to real 0; real 2 gets nothing
    d = np.array([[1.0, 4.0], [2.0, 2.0], [1.0, 8.0]])
    idx = np.array([[1, 0], [0, 1], [1, 2]])
    got = sc.attribution_margin(-d, idx, 3, metric="euclidean")
    np.testing.assert_allclose(got, [0.0, np.log(4) + np.log(8), 0.0])
    with pytest.raises(ValueError):
        sc.attribution_margin(-d, idx, 2, metric="euclidean")  # index 2 outside a 2-image real set


def test_attribution_margin_needs_two_neighbours() -> None:
    np.testing.assert_array_equal(
        sc.attribution_margin(np.ones((4, 1)), np.zeros((4, 1), int), 3), np.zeros(3)
    )


# ---------------------------------------------------------------- fusion
def test_normalised_ranks_average_ties() -> None:
    np.testing.assert_allclose(
        sc.normalised_ranks(np.array([3.0, 1.0, 1.0, 7.0])), [2 / 3, 1 / 6, 1 / 6, 1.0]
    )
    np.testing.assert_allclose(sc.normalised_ranks(np.array([5.0])), [0.5])


def test_rank_fuse_is_scale_free_and_weighted() -> None:
    a, b = np.array([1.0, 2.0, 3.0]), np.array([300.0, 200.0, 100.0])
    np.testing.assert_allclose(sc.rank_fuse([a, b]), [0.5, 0.5, 0.5])
    np.testing.assert_allclose(sc.rank_fuse([a, b], weights=[3, 1]), [0.25, 0.5, 0.75])
    np.testing.assert_allclose(sc.rank_fuse([a * 1e6]), sc.rank_fuse([a]))
    with pytest.raises(ValueError):
        sc.rank_fuse([a, b[:2]])
    with pytest.raises(ValueError):
        sc.rank_fuse([])


# ---------------------------------------------------------------- features
def test_ncc_vectors_are_centred_and_unit() -> None:
    x = sc.ncc_vectors(
        np.arange(2 * 9, dtype=np.uint8).reshape(2, 3, 3) * np.array([1, 3], np.uint8)[:, None, None]
    )
    np.testing.assert_allclose(x.mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1, atol=1e-6)
    np.testing.assert_allclose(x[0], x[1], atol=1e-6)  # NCC ignores contrast


def test_whitening_equalises_variance(rng: np.random.Generator) -> None:
    x = rng.normal(size=(2000, 5)) * np.array([10.0, 5.0, 1.0, 0.5, 0.2])
    w = sc.fit_whitening(x, floor=1e-6)
    z = (x - w.mean) @ w.components / w.scale
    np.testing.assert_allclose(np.cov(z.T, bias=True), np.eye(5), atol=5e-3)
    out = sc.apply_whitening(x[:10], w)
    assert out.dtype == np.float32 and np.allclose(np.linalg.norm(out, axis=1), 1, atol=1e-5)


def test_whitening_gram_route_matches_covariance_route(rng: np.random.Generator) -> None:
    """With more dimensions than samples the Gram route keeps the floored residual: same cosines as the
    full covariance eigendecomposition."""
    x = rng.normal(size=(30, 50)) @ rng.normal(size=(50, 50))
    w = sc.fit_whitening(x)  # n=30 < D=50: Gram route
    assert w.components.shape == (50, 29) or w.components.shape == (50, 30)
    q = rng.normal(size=(6, 50)) @ rng.normal(size=(50, 50))
    got = sc.apply_whitening(q, w)
    xc = x - x.mean(0)
    val, vec = np.linalg.eigh(xc.T @ xc / len(x))
    val = np.clip(val, 0, None)
    ref = (q - x.mean(0)) @ vec / np.sqrt(val + 1e-3 * val.max())
    ref /= np.linalg.norm(ref, axis=1, keepdims=True)
    np.testing.assert_allclose(got @ got.T, ref @ ref.T, atol=1e-4)


def test_fit_whitening_validates() -> None:
    with pytest.raises(ValueError):
        sc.fit_whitening(np.zeros((1, 4)))
    with pytest.raises(ValueError):
        sc.fit_whitening(np.ones((5, 4)), floor=0)


# ---------------------------------------------------------------- shift-tolerant NCC
def test_shift_tolerant_ncc_finds_a_shifted_copy(rng: np.random.Generator) -> None:
    real = rng.integers(0, 256, (3, 16, 16)).astype(np.uint8)
    generated = rng.integers(0, 256, (5, 16, 16)).astype(np.uint8)
    generated[2] = np.roll(real[0], (1, -1), axis=(0, 1))  # real[0] moved down 1, left 1
    cand = np.array([[2, 0], [1, 3], [4, 2]])
    tolerant = sc.shift_tolerant_ncc(real, generated, cand, max_shift=1)
    strict = sc.shift_tolerant_ncc(real, generated, cand, max_shift=0)
    assert tolerant[0] > 0.999 and strict[0] < 0.5
    assert tolerant[1] < 0.5 and (tolerant >= strict - 1e-9).all()
    with pytest.raises(ValueError):
        sc.shift_tolerant_ncc(real, generated, cand, max_shift=8)


# ---------------------------------------------------------------- end to end on a synthetic audit
def test_density_attribution_score_detects_memorised_images(rng: np.random.Generator) -> None:
    """Clusters of different spread; used images have two noisy near-copies among the generated ones
    (noise half their cluster's spread). Max similarity favours the tight clusters; the default recipe
    normalises for that and ranks the used images first."""
    n, side = 80, 12
    protos = rng.normal(size=(4, side, side)) * 40
    spread = np.array([6.0, 12.0, 24.0, 48.0])
    c = rng.integers(0, 4, n)
    real = 128 + protos[c] + rng.normal(size=(n, side, side)) * spread[c, None, None]
    used = np.zeros(n, int)
    used[rng.permutation(n)[: n // 2]] = 1
    ui = np.flatnonzero(used)
    noise = 0.5 * np.repeat(spread[c[ui]], 2)[:, None, None]
    copies = np.repeat(real[ui], 2, axis=0) + rng.normal(size=(2 * len(ui), side, side)) * noise
    cf = rng.integers(0, 4, 2 * n)
    fresh = 128 + protos[cf] + rng.normal(size=(2 * n, side, side)) * spread[cf, None, None]
    generated = np.clip(np.concatenate([copies, fresh]), 0, 255).astype(np.uint8)
    real = np.clip(real, 0, 255).astype(np.uint8)

    fr, fg = sc.ncc_vectors(real), sc.ncc_vectors(generated)
    baseline = sc.max_similarity(dense_neighbours(fr, fg, 1)[0])
    w = sc.fit_whitening(np.concatenate([fr, fg]))
    wr, wg = sc.apply_whitening(fr, w), sc.apply_whitening(fg, w)
    k = sc.default_k(n)
    rg, _ = dense_neighbours(wr, wg, k)
    rr, _ = dense_neighbours(wr, wr, k, exclude_self=True)
    gr, gidx = dense_neighbours(wg, wr, 2)
    s = sc.density_attribution_score(rg, rr, gr, gidx)
    assert s.shape == (n,) and np.isfinite(s).all()
    assert auc(used, s) > 0.95
    assert auc(used, s) > auc(used, baseline) + 0.05
