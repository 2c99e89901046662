"""synthaudit.models.index: exact FAISS neighbours, 'higher = closer' for every metric, exclude_self."""

from __future__ import annotations

import numpy as np
import pytest

from synthaudit.models.index import SIMILARITY_METRICS, search


def brute_force(queries: np.ndarray, base: np.ndarray, metric: str) -> np.ndarray:
    q, b = queries.astype(np.float64), base.astype(np.float64)
    if metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        b = b / np.linalg.norm(b, axis=1, keepdims=True)
        return q @ b.T
    if metric == "euclidean":
        return -np.sqrt(((q[:, None, :] - b[None, :, :]) ** 2).sum(-1))
    return -np.abs(q[:, None, :] - b[None, :, :]).sum(-1)


@pytest.fixture
def images(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """'Generated' and 'real' 8x8 images as flat pixel vectors; real[3] is a copy of generated[7]."""
    generated = rng.integers(0, 256, (40, 8, 8)).astype(np.uint8)
    real = rng.integers(0, 256, (12, 8, 8)).astype(np.uint8)
    real[3] = generated[7]
    return real.reshape(12, -1).astype(np.float32), generated.reshape(40, -1).astype(np.float32)


@pytest.mark.parametrize("metric", SIMILARITY_METRICS)
def test_copied_image_is_the_nearest_neighbour(images, metric: str) -> None:
    real, generated = images
    sims, idx = search(real, generated, k=5, metric=metric, device="cpu")
    assert sims.shape == idx.shape == (12, 5)
    assert sims.dtype == np.float32 and idx.dtype == np.int64
    assert idx[3, 0] == 7
    best_possible = 1.0 if metric == "cosine" else 0.0
    assert sims[3, 0] == pytest.approx(best_possible, abs=1e-4)
    assert (sims[:, 0] <= best_possible + 1e-4).all()
    assert (np.diff(sims, axis=1) <= 1e-6).all()  # sorted descending


@pytest.mark.parametrize("metric", SIMILARITY_METRICS)
def test_matches_brute_force(rng: np.random.Generator, metric: str) -> None:
    queries = rng.normal(size=(30, 6)).astype(np.float32)
    base = rng.normal(size=(50, 6)).astype(np.float32)
    sims, idx = search(queries, base, k=4, metric=metric)
    expected = brute_force(queries, base, metric)
    assert (idx == np.argsort(-expected, axis=1)[:, :4]).all()
    assert sims == pytest.approx(np.take_along_axis(expected, idx, 1), rel=1e-4, abs=1e-4)


def test_cosine_ignores_scale(rng: np.random.Generator) -> None:
    base = rng.normal(size=(10, 4)).astype(np.float32)
    sims, idx = search(base[2:3] * 50.0, base, k=1)
    assert idx[0, 0] == 2 and sims[0, 0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("metric", SIMILARITY_METRICS)
def test_exclude_self_drops_own_row_even_with_duplicates(rng: np.random.Generator, metric: str) -> None:
    base = rng.normal(size=(20, 5)).astype(np.float32)
    base[1] = base[0]  # exact duplicate pair
    sims, idx = search(base, base, k=3, metric=metric, exclude_self=True)
    assert idx.shape == (20, 3)
    assert not (idx == np.arange(20)[:, None]).any()
    assert idx[0, 0] == 1 and idx[1, 0] == 0
    best_possible = 1.0 if metric == "cosine" else 0.0
    assert sims[0, 0] == pytest.approx(best_possible, abs=1e-4)
    expected = brute_force(base, base, metric)
    np.fill_diagonal(expected, -np.inf)
    assert sims[2:] == pytest.approx(np.sort(expected, axis=1)[2:, ::-1][:, :3], rel=1e-4, abs=1e-4)


def test_k_is_clipped_to_the_base(rng: np.random.Generator) -> None:
    base = rng.normal(size=(4, 3)).astype(np.float32)
    assert search(base, base, k=10)[1].shape == (4, 4)
    assert search(base, base, k=10, exclude_self=True)[1].shape == (4, 3)
    sims, idx = search(base[:1], base[:1], k=2, exclude_self=True)
    assert sims.shape == idx.shape == (1, 0)


def test_errors() -> None:
    x = np.zeros((3, 2), np.float32)
    with pytest.raises(ValueError, match="unknown similarity metric 'hamming'"):
        search(x, x, 1, metric="hamming")
    with pytest.raises(ValueError):
        search(x, np.zeros((3, 4), np.float32), 1)
    with pytest.raises(ValueError):
        search(x, x, 0)
    with pytest.raises(ValueError):
        search(x[:2], x, 1, exclude_self=True)


@pytest.mark.parametrize("metric", ["cosine", "euclidean", "manhattan"])
def test_torch_fallback_matches_faiss(metric: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Hosts without faiss (GPU images) search with torch and must get the same neighbours."""
    import synthaudit.models.index as index_module

    rng = np.random.default_rng(7)
    queries, base = rng.normal(size=(40, 16)).astype(np.float32), rng.normal(size=(90, 16)).astype(np.float32)
    expected = index_module.search(queries, base, 5, metric=metric)
    monkeypatch.setattr(index_module, "faiss", None)
    got = index_module.search(queries, base, 5, metric=metric)
    np.testing.assert_array_equal(got[1], expected[1])
    np.testing.assert_allclose(got[0], expected[0], rtol=1e-4, atol=1e-4)


def test_the_torch_engine_and_faiss_give_the_same_answer_with_ties(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CPU's cosine engine is torch (matmul + topk); FAISS's flat index must give the same sims and
    indices bit for bit, duplicated rows (exact ties, ordered by base index) included."""
    import synthaudit.models.index as index_module

    rng = np.random.default_rng(11)
    base = rng.normal(size=(300, 24)).astype(np.float32)
    base[150:200] = base[:50]  # exact ties
    queries = np.r_[base[:30], rng.normal(size=(70, 24)).astype(np.float32)]
    torch_answer = index_module.search(queries, base, 12)
    monkeypatch.setattr(index_module, "_torch_engine", lambda *a: False)
    faiss_answer = index_module.search(queries, base, 12)
    np.testing.assert_array_equal(torch_answer[0], faiss_answer[0])
    np.testing.assert_array_equal(torch_answer[1], faiss_answer[1])


@pytest.mark.parametrize("score_bytes", [4 * 300 * 7, 2**28])  # 7 query rows at a time, or all at once
def test_both_ways_proposals_give_the_two_searches(score_bytes: int, monkeypatch: pytest.MonkeyPatch) -> None:
    import synthaudit.models.index as index_module

    monkeypatch.setattr(index_module, "TORCH_SCORE_BYTES", score_bytes)
    rng = np.random.default_rng(12)
    queries = rng.normal(size=(120, 24)).astype(np.float32)
    base = rng.normal(size=(300, 24)).astype(np.float32)
    base[200:230] = base[:30]  # ties in the forward direction
    queries[60:70] = queries[:10]  # and in the backward one

    def both_ways(
        q: np.ndarray, b: np.ndarray, k: int, k_back: int
    ) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
        found = index_module.both_ways_proposals(q, b, k, k_back)
        assert found is not None
        return search(q, b, k, proposals=found[0]), search(b, q, k_back, proposals=found[1])

    forward, backward = both_ways(queries, base, 9, 2)
    for got, expected in ((forward, search(queries, base, 9)), (backward, search(base, queries, 2))):
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
    small = both_ways(queries[:3], base, 9, 5)  # fewer queries than k_back + margin
    np.testing.assert_array_equal(small[1][1], search(base, queries[:3], 5)[1])


@pytest.mark.parametrize("chunk", [7, 1024])
def test_the_pooled_max_over_versions_equals_the_merge_of_each_versions_search(
    chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """models/version_search.py: one pooled exact re-check gives the merge of the per-version searches bit for
    bit, with an excluded index per row (real -> real), ties, and rows the bound sends version by version."""
    import synthaudit.models.version_search as pooled
    from synthaudit.models.alignment import merge_versions

    monkeypatch.setattr(pooled, "ROW_CHUNK", chunk)
    rng = np.random.default_rng(13)
    base = rng.normal(size=(200, 32)).astype(np.float32)
    base[150:170] = base[:20]  # exact ties between base rows
    queries = base[:60] + 0.3 * rng.normal(size=(60, 32)).astype(np.float32)
    versions = [queries + 0.2 * rng.normal(size=queries.shape).astype(np.float32) for _ in range(5)]
    versions.append(versions[0].copy())  # a version equal to another: ties across versions
    for exclude, k_each, k_out in ((None, 9, 9), (np.arange(60), 10, 9)):
        identity = search(queries, base, k_each)
        expected = merge_versions(
            [identity] + [search(v, base, k_each) for v in versions], k_out, exclude=exclude
        )
        got = pooled.max_over_versions(versions, base, k_each, k_out, identity, exclude=exclude)
        np.testing.assert_array_equal(got[0], expected[0])
        np.testing.assert_array_equal(got[1], expected[1])
        proposals = [index_proposals(v, base, k_each) for v in versions]  # precomputed candidates
        again = pooled.max_over_versions(versions, base, k_each, k_out, identity, exclude, proposals)
        np.testing.assert_array_equal(again[1], expected[1])
    monkeypatch.setattr(
        pooled, "engine_error_bound", lambda dim: 10.0
    )  # no row bounded: all version by version
    identity = search(queries, base, 9)
    expected = merge_versions([identity] + [search(v, base, 9) for v in versions], 9)
    np.testing.assert_array_equal(pooled.max_over_versions(versions, base, 9, 9, identity)[1], expected[1])


def index_proposals(queries: np.ndarray, base: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    from synthaudit.models.index import both_ways_proposals

    found = both_ways_proposals(queries, base, k, 2)
    assert found is not None
    return found[0]
