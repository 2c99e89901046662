"""synthaudit.models.shards: shard ranges, the exact top-k merge, and sharded embed + search = unsharded, bit for bit."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
from synthetic_sets import make_membership_set, make_misaligned_set

from synthaudit.models.config import AuditConfig
from synthaudit.models.index import SIMILARITY_METRICS, search
from synthaudit.models.shards import (
    merge_topk,
    read_rows,
    run_real,
    run_shard,
    run_sharded,
    shard_ranges,
    write_plan,
)
from synthaudit.models.stages import AuditInputs, _load_npz, run_audit, run_stage
from synthaudit.models.workdir import WorkDir


@pytest.mark.parametrize(
    ("n", "shards", "align"),
    [(10, 3, 1), (40, 3, 8), (7, 10, 1), (100, 4, 64), (1, 5, 3), (64, 2, 64), (1000, 7, 16)],
)
def test_shard_ranges_cover_the_set_in_aligned_contiguous_pieces(n: int, shards: int, align: int) -> None:
    ranges = shard_ranges(n, shards, align)
    assert ranges[0][0] == 0 and ranges[-1][1] == n
    assert all(a < b for a, b in ranges)  # non-empty
    assert all(prev[1] == nxt[0] for prev, nxt in itertools.pairwise(ranges))  # contiguous
    assert all(b % align == 0 for _, b in ranges[:-1])
    assert len(ranges) == min(shards, -(-n // align))
    sizes = [b - a for a, b in ranges[:-1]]
    assert not sizes or max(sizes) - min(sizes) <= align  # balanced


def test_shard_ranges_edges() -> None:
    assert shard_ranges(0, 3) == []
    with pytest.raises(ValueError):
        shard_ranges(5, 0)


def _split_search(queries, base, k, metric, bounds):  # type: ignore[no-untyped-def]
    parts = []
    for start, stop in bounds:
        sims, idx = search(queries, base[start:stop], k, metric=metric)
        parts.append((sims, idx, start))
    return merge_topk(parts, k)


@pytest.mark.parametrize("metric", SIMILARITY_METRICS)
@pytest.mark.parametrize("k", [1, 5, 12])
def test_merge_topk_equals_one_search_over_the_whole_base(metric: str, k: int) -> None:
    rng = np.random.default_rng(3)
    base = rng.normal(size=(300, 16)).astype(np.float32)
    base[100:106] = base[7]  # exact duplicates: tied similarities across shards
    base[250:253] = base[7]
    queries = rng.normal(size=(50, 16)).astype(np.float32)
    queries[0] = base[7] + 0.01 * queries[0]  # its top-k is a wall of ties
    queries[1] = base[7]
    expected = search(queries, base, k, metric=metric)
    for bounds in (shard_ranges(300, 3), shard_ranges(300, 7, 8), [(0, 3), (3, 101), (101, 300)]):
        sims, idx = _split_search(queries, base, k, metric, bounds)
        np.testing.assert_array_equal(idx, expected[1])
        np.testing.assert_array_equal(sims, expected[0])
    # Ties are broken by the lower global index.
    assert idx[1, : min(k, 10)].tolist() == [7, 100, 101, 102, 103, 104, 105, 250, 251, 252][: min(k, 10)]


def test_merge_topk_orders_by_similarity_then_index_and_clips_k() -> None:
    sims_a, idx_a = np.array([[0.9, 0.5]], np.float32), np.array([[1, 0]])
    sims_b, idx_b = np.array([[0.9, 0.7, 0.1]], np.float32), np.array([[0, 2, 1]])
    sims, idx = merge_topk([(sims_b, idx_b, 10), (sims_a, idx_a, 0)], k=4)
    assert idx.tolist() == [[1, 10, 12, 0]]
    np.testing.assert_allclose(sims, [[0.9, 0.9, 0.7, 0.5]])
    assert merge_topk([(sims_a, idx_a, 0)], k=9)[1].shape == (1, 2)
    with pytest.raises(ValueError):
        merge_topk([], 3)


def test_read_rows_reads_a_slice_of_an_npz(tmp_path: Path) -> None:
    data = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
    np.savez(tmp_path / "a.npz", images=data, ids=np.array(["a", "b", "c", "d", "e"]))
    np.testing.assert_array_equal(read_rows(tmp_path / "a.npz", "images", 1, 4), data[1:4])
    np.testing.assert_array_equal(read_rows(tmp_path / "a.npz", "images", 0, None), data)
    np.savez_compressed(tmp_path / "c.npz", images=data)  # compressed: falls back to a full read
    np.testing.assert_array_equal(read_rows(tmp_path / "c.npz", "images", 2, 5), data[2:5])


@pytest.mark.slow
@pytest.mark.parametrize(
    "config",
    [
        AuditConfig(method="pixels", image_size=32, batch_size=8),
        AuditConfig(method="paper", image_size=32, batch_size=8, pretrain_images_seen=64),
        AuditConfig(method="default", image_size=32, batch_size=8),
    ],
    ids=["pixels", "paper-mae", "default"],
)
def test_sharded_embed_and_search_write_the_unsharded_artifacts(tmp_path: Path, config: AuditConfig) -> None:
    root = tmp_path / "set"
    make_membership_set(root, n_used=6, n_unused=6, n_fresh_generated=30, size=32, exact_copies=True)
    inputs = AuditInputs(root / "real", root / "generated")
    single = run_audit(inputs, config, tmp_path / "single")

    work = tmp_path / "sharded"
    for stage in ("decode", "pretrain"):  # not sharded; deterministic for the seed
        run_stage(stage, work, inputs, config)
    ranges = run_sharded(work, config, shards=3)
    assert len(ranges) == 3 and ranges[-1][1] == 36
    for artifact in ("features.npz", "neighbours.npz"):
        got, want = _load_npz(work / artifact), _load_npz(tmp_path / "single" / artifact)
        assert sorted(got) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{artifact}:{key}")
    assert not (work / "shards").exists()
    sharded = run_audit(inputs, config, work)  # embed and search are done: only decide runs
    assert (work / "results.csv").read_text() == (tmp_path / "single" / "results.csv").read_text()
    assert [r.id for r in sharded.rows] == [r.id for r in single.rows]


@pytest.mark.parametrize("copies", ["misaligned", "far", "exact"])
def test_the_aligned_search_gives_the_same_result_sharded_and_unsharded(tmp_path: Path, copies: str) -> None:
    root = tmp_path / "set"
    make_misaligned_set(root, n_used=40, n_unused=40, n_fresh_generated=40, copies=copies)
    config = AuditConfig(image_size=16, batch_size=16)
    inputs = AuditInputs(root / "real", root / "generated")
    run_audit(inputs, config, tmp_path / "single")
    work = tmp_path / "sharded"
    for stage in ("decode", "pretrain"):
        run_stage(stage, work, inputs, config)
    assert len(run_sharded(work, config, shards=3)) == 3
    for artifact in ("features.npz", "neighbours.npz"):
        got, want = _load_npz(work / artifact), _load_npz(tmp_path / "single" / artifact)
        assert sorted(got) == sorted(want)
        for key in want:
            np.testing.assert_array_equal(got[key], want[key], err_msg=f"{artifact}:{key}")
    record = (work / "alignment.json").read_text()
    assert record == (tmp_path / "single" / "alignment.json").read_text()
    view = json.loads(record)["views"]["pixels_whitened-cosine"]
    assert view["fired"] is (copies == "misaligned")
    assert view.get("probe_fired", False) is (copies == "far")
    run_audit(inputs, config, work)
    assert (work / "results.csv").read_text() == (tmp_path / "single" / "results.csv").read_text()


def test_a_shard_runs_only_the_gates_aligned_search(tmp_path: Path) -> None:
    """The gate is decided at the merge; a shard searches its generated rows over the versions (what the gate
    needs) but not real -> shard over the versions, which only a fired gate uses (the merge runs it then)."""
    root = tmp_path / "set"
    make_misaligned_set(root, n_used=20, n_unused=20, n_fresh_generated=20, copies="misaligned")
    config = AuditConfig(image_size=16, batch_size=16)
    inputs = AuditInputs(root / "real", root / "generated")
    for stage in ("decode", "pretrain"):
        run_stage(stage, tmp_path, inputs, config)
    write_plan(tmp_path, config, shards=2)
    run_real(tmp_path, config)
    run_shard(tmp_path, config, 0)
    shard = _load_npz(WorkDir(tmp_path).shard(0))
    assert "pixels_whitened-cosine/gr_aug_sims" in shard
    assert not any("rg_aug" in key for key in shard)
