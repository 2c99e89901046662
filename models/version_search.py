"""The top k of the max over geometric versions of the queries, with one exact re-check of the merged
candidates instead of one per version.

The aligned search (models/stages/search.py) needs, for every real image, the base rows most similar to any
of its versions: the merge of each version's exact top-k (models.alignment.merge_versions). Done version by
version, every version's candidates are recomputed exactly (float64 gathers), 29 times the work of one
search. Here the engine (torch's matmul + topk) proposes each version's candidates, they are pooled, and only
the pool's best are recomputed exactly; a row is answered when no pair left out could reach its k-th exact
similarity: a pair left out has an engine similarity at most the largest one skipped, or at most its
version's lowest proposal, and a float32 dot product of unit vectors is within `engine_error_bound` of the
exact one. A row where that bound reaches the k-th similarity is searched version by version, as before. So
the answer is the merge of the per-version searches, bit for bit (tested).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ROW_CHUNK = 1024  # query rows pooled at once
UNIT_ROUNDOFF = 2.0**-24  # float32


def engine_error_bound(dim: int) -> float:
    """A bound on |float32 dot product - exact| for unit vectors of `dim` entries: gamma_dim of recursive
    summation (any order), twice over for the rounding of the normalised inputs, plus 1e-7."""
    gamma = dim * UNIT_ROUNDOFF / (1.0 - dim * UNIT_ROUNDOFF)
    return 2.0 * gamma + 1e-7


def max_over_versions(
    versions: Sequence[np.ndarray],
    base: np.ndarray,
    k_each: int,
    k_out: int,
    identity: tuple[np.ndarray, np.ndarray],
    exclude: np.ndarray | None = None,
    proposals: Sequence[tuple[np.ndarray, np.ndarray] | None] | None = None,
    options: Any = None,
) -> tuple[np.ndarray, np.ndarray]:
    """merge_versions([identity] + [search(v, base, k_each, **options) for v in versions], k_out, exclude),
    with one pooled exact re-check (cosine on the torch engine; elsewhere exactly that merge). `proposals`
    holds, per version, the engine's candidates already found for every row (k_each + TIE_MARGIN of them,
    models.index.both_ways_proposals), or None."""
    from synthaudit.models.alignment import merge_versions
    from synthaudit.models.index import search, torch_proposes_cosine

    options = dict(options or {})
    n, m = len(identity[0]), len(base)

    def by_version(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        parts = [(identity[0][rows], identity[1][rows])]
        parts += [search(v[rows], base, k_each, **options) for v in versions]
        return merge_versions(parts, k_out, None if exclude is None else exclude[rows])

    if (
        not versions
        or n == 0
        or m == 0
        or k_out < 1
        or not torch_proposes_cosine(
            options.get("metric", "cosine"), options.get("device", "auto"), options.get("ivf_min_size"), m
        )
    ):
        return by_version(np.arange(n))
    sims = np.empty((n, k_out), np.float32)
    idx = np.empty((n, k_out), np.int64)
    prepared = _Base(base, k_each, options.get("device", "auto"))
    fallback: list[np.ndarray] = []
    for lo in range(0, n, ROW_CHUNK):
        rows = np.arange(lo, min(n, lo + ROW_CHUNK))
        found = [p if p is None else (p[0][rows], p[1][rows]) for p in (proposals or [None] * len(versions))]
        s, i, ok = _pooled(prepared, [v[rows] for v in versions], found, identity, rows, k_out, exclude)
        sims[rows[ok]], idx[rows[ok]] = s[ok], i[ok]
        fallback.append(rows[~ok])
    rest = np.concatenate(fallback)
    if len(rest):
        sims[rest], idx[rest] = by_version(rest)
    return sims, idx


class _Base:
    """The base as the exact search sees it: unit rows, in float64 where it fits."""

    def __init__(self, base: np.ndarray, k_each: int, device: str) -> None:
        from synthaudit.models.index import EXACT_BASE_BYTES, TIE_MARGIN, _normalised

        self.unit = _normalised(np.asarray(base, dtype=np.float32))
        self.unit64 = self.unit.astype(np.float64) if 2 * self.unit.nbytes <= EXACT_BASE_BYTES else None
        self.wanted = min(len(base), k_each + TIE_MARGIN)
        self.slack = engine_error_bound(self.unit.shape[1])
        self.device = device


def _pooled(
    base: _Base,
    versions: list[np.ndarray],
    proposals: list[tuple[np.ndarray, np.ndarray] | None],
    identity: tuple[np.ndarray, np.ndarray],
    rows: np.ndarray,
    k_out: int,
    exclude: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One chunk of rows: the merged top k_out from the pool, and which rows it answers.

    Per row, the pool's base rows are ranked by their best engine similarity over the versions; the first
    k_out + TIE_MARGIN of them are recomputed exactly in every version whose engine similarity is within
    twice the engine's error of that best (no other version can hold the row's max). A row is answered when
    every base row left out (not among those, or not proposed by a version) is bounded below its k-th
    exact similarity."""
    from synthaudit.models.alignment import merge_versions
    from synthaudit.models.index import TIE_MARGIN, _normalised, _torch_search, exact_similarity

    units = [_normalised(np.asarray(v, dtype=np.float32)) for v in versions]
    found = [
        p if p is not None else _torch_search(u, base.unit, base.wanted, "cosine", base.device)
        for u, p in zip(units, proposals, strict=True)
    ]
    h, w = len(rows), base.wanted
    engine = np.stack([f[0] for f in found], 1).astype(np.float64)  # [h, V, w], each version's best first
    cand = np.stack([f[1] for f in found], 1).astype(np.int64)
    unproposed = engine[:, :, -1].max(axis=1) if w < len(base.unit) else np.full(h, -np.inf)
    if exclude is not None:
        engine = np.where(cand == exclude[rows][:, None, None], -np.inf, engine)
    flat_e, flat_j = engine.reshape(h, -1), cand.reshape(h, -1)
    order = np.lexsort((-flat_e, flat_j), axis=1)  # by base row, its best engine similarity first
    e, j = np.take_along_axis(flat_e, order, 1), np.take_along_axis(flat_j, order, 1)
    version_of = order // w
    cols = np.arange(e.shape[1])
    first = np.ones(e.shape, dtype=bool)
    first[:, 1:] = j[:, 1:] != j[:, :-1]
    start = np.maximum.accumulate(np.where(first, cols, 0), axis=1)  # each pair's group start
    best = np.where(first, e, -np.inf)  # one entry per base row: its best engine similarity
    keep = min(best.shape[1], k_out + TIE_MARGIN)
    cut = -np.partition(-best, keep - 1, axis=1)[:, keep - 1]
    chosen = first & (best >= cut[:, None]) & (best > -np.inf)
    left_out = np.where(first & ~chosen, best, -np.inf).max(axis=1)
    evaluate = np.take_along_axis(chosen, start, 1) & (
        e >= np.take_along_axis(e, start, 1) - 2.0 * base.slack
    )
    exact = np.full(e.shape, -np.inf, np.float32)
    for v in range(len(versions)):
        mask = evaluate & (version_of == v)
        hit = np.flatnonzero(mask.any(axis=1))
        if not len(hit):
            continue
        pos = np.cumsum(mask[hit], axis=1) - 1
        r, c = np.nonzero(mask[hit])
        sel = np.full((len(hit), int(pos[:, -1].max()) + 1), -1, np.int64)
        sel[r, pos[r, c]] = j[hit][r, c]
        values = exact_similarity(units[v][hit], base.unit, sel, "cosine", base.unit64)
        exact[hit[r], c] = values[r, pos[r, c]]
    parts = [(identity[0][rows], identity[1][rows]), (exact, j)]
    sims, idx = merge_versions(parts, k_out, None if exclude is None else exclude[rows])
    bound = np.maximum(left_out, unproposed) + base.slack
    return sims, idx, bound < sims[:, -1]
