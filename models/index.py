"""k-nearest-neighbour search with FAISS; similarities are always 'higher = closer'.

Exact (flat) search by default: FAISS's flat index on a GPU and for the L2/L1 metrics, torch's matmul +
topk for cosine on the CPU (``_torch_engine``); either only proposes candidates, whose similarities are then
recomputed exactly. A base of at least ``ivf_min_size`` vectors gets an approximate IVF index
(nlist ~ sqrt(M)), see ``ivf_params``. Ties are broken by the lower base index, so the
result is deterministic and a sharded search merges into the same answer (models/shards.py).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypedDict

import numpy as np

if TYPE_CHECKING:
    import torch

try:  # FAISS is the engine; a torch search stands in on hosts without it (same results, exact)
    import faiss
except ImportError:  # pragma: no cover - exercised on GPU hosts that carry no faiss build
    faiss = None  # type: ignore[assignment]  # optional engine: every use checks `faiss is None` first

SIMILARITY_METRICS = ("cosine", "euclidean", "manhattan")
QUERY_BATCH = 16384
GPU_MAX_K = 2048
IVF_TRAIN_PER_LIST = 64  # k-means training sample: at most this many vectors per list
IVF_SEED = 1234
TIE_MARGIN = 8  # extra candidates fetched, so that the k-th place is decided on exact similarities
ENGINE_ERROR_SAFETY = 4.0  # unseen engine errors are taken to be at most this many times the largest seen
# gathered candidates per step of the exact re-check: small enough to stay in the CPU's caches (4x faster
# than 64 MiB, the same values)
EXACT_CHUNK_BYTES = 8 * 2**20
TORCH_SCORE_BYTES = 256 * 2**20  # scores [queries, base] the torch engine holds at once
EXACT_BASE_BYTES = 2**30  # a base up to this size in float64 is converted once per search, not once per row


class SearchOptions(TypedDict):
    """The keyword options of search() that a view and the audit config fix."""

    metric: str
    device: str
    ivf_min_size: int | None


def _as_matrix(x: object, what: str) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array [N, D], got shape {arr.shape}")
    return arr


def _normalised(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def _build_index(base: np.ndarray, metric: str) -> faiss.Index:
    d = base.shape[1]
    index: faiss.IndexFlat
    if metric == "cosine":
        index = faiss.IndexFlatIP(d)
    elif metric == "euclidean":
        index = faiss.IndexFlatL2(d)
    else:
        index = faiss.IndexFlat(d, faiss.METRIC_L1)
    index.add(base)
    return index


def ivf_params(m: int) -> tuple[int, int]:
    """(nlist, nprobe) of the IVF index for a base of m vectors: nlist ~ sqrt(m), nprobe ~ nlist / 4
    (recall@5 0.98 on the fmnist-ddpm-dev features, docs/performance.md)."""
    nlist = max(1, round(math.sqrt(m)))
    return nlist, max(1, min(nlist, math.ceil(nlist / 4)))


def _build_ivf(base: np.ndarray, metric: str, nlist: int, nprobe: int) -> faiss.IndexIVFFlat:
    """An IVF-Flat index (coarse k-means quantizer, seeded) over base."""
    d = base.shape[1]
    quantizer: faiss.IndexFlat
    if metric == "cosine":
        quantizer, faiss_metric = faiss.IndexFlatIP(d), faiss.METRIC_INNER_PRODUCT
    else:
        quantizer = faiss.IndexFlatL2(d)
        faiss_metric = faiss.METRIC_L2 if metric == "euclidean" else faiss.METRIC_L1
    index = faiss.IndexIVFFlat(quantizer, d, nlist, faiss_metric)
    index.cp.seed = IVF_SEED
    index.cp.min_points_per_centroid = 1  # small bases (tests, perf) train without a warning
    sample = base
    if len(base) > IVF_TRAIN_PER_LIST * nlist:
        rows = np.random.default_rng(IVF_SEED).choice(len(base), IVF_TRAIN_PER_LIST * nlist, replace=False)
        sample = base[np.sort(rows)]
    index.train(np.ascontiguousarray(sample))
    index.add(base)
    index.nprobe = nprobe
    return index


def _use_gpu(device: str, k: int) -> bool:
    if str(device).lower() == "cpu" or k > GPU_MAX_K:
        return False
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def _torch_engine(metric: str, device: str, approximate: bool) -> bool:
    """True where the exact cosine search runs on torch's matmul + topk rather than FAISS's flat index: on
    the CPU, where FAISS's per-query heaps make it 2-4x slower than a BLAS product and a top-k for the k of an
    audit (docs/performance.md). The answer is the same: the engine only proposes candidates, exact
    similarities decide (_search_rows)."""
    return metric == "cosine" and not approximate and not _use_gpu(device, 1)


def torch_proposes_cosine(metric: str, device: str, ivf_min_size: int | None, *base_sizes: int) -> bool:
    """True where exact cosine searches over bases of these sizes take their candidates from torch (no IVF,
    no FAISS GPU index): the searches whose first round `both_ways_proposals` and models/version_search.py
    may compute themselves."""
    approximate = faiss is not None and ivf_min_size is not None and max(base_sizes) >= max(1, ivf_min_size)
    return metric == "cosine" and (faiss is None or _torch_engine(metric, device, approximate))


def _torch_device(device: str) -> torch.device:
    import torch

    return torch.device("cuda" if str(device).lower() != "cpu" and torch.cuda.is_available() else "cpu")


@contextmanager
def _full_fp32() -> Iterator[None]:
    """Matrix products in full float32 on CUDA too: TF32 would blur near neighbours."""
    import torch

    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def _score_rows(n_base: int) -> int:
    """Query rows per step of a torch engine: TORCH_SCORE_BYTES of float32 scores."""
    return max(1, TORCH_SCORE_BYTES // max(1, 4 * n_base))


def _torch_search(
    q: np.ndarray, b: np.ndarray, k: int, metric: str, device: str
) -> tuple[np.ndarray, np.ndarray]:
    """Exact search with torch (cuda when asked and present): raw FAISS-style distances and indices.
    Queries go TORCH_SCORE_BYTES of scores at a time, so memory stays bounded for a large base."""
    import torch

    dev = _torch_device(device)
    base = torch.from_numpy(b).to(dev)
    rows = _score_rows(b.shape[0])
    values_out, idx_out = [], []
    with _full_fp32():
        for lo in range(0, q.shape[0], rows):
            query = torch.from_numpy(q[lo : lo + rows]).to(dev)
            if metric == "cosine":
                values, idx = (query @ base.T).topk(k, dim=1)
            else:
                dist = torch.cdist(query, base, p=2.0 if metric == "euclidean" else 1.0)
                values, idx = dist.topk(k, dim=1, largest=False)
                values = values.square() if metric == "euclidean" else values
            values_out.append(values.cpu().numpy())
            idx_out.append(idx.cpu().numpy())
    return np.concatenate(values_out), np.concatenate(idx_out)


def _fill_short_rows(
    found: tuple[np.ndarray, np.ndarray], base: np.ndarray, metric: str, chunk: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """IVF rows with missing neighbours (-1: the probed lists were too small) searched exactly."""
    dist, idx = found
    short = (idx < 0).any(axis=1)
    if short.any():
        dist, idx = dist.copy(), idx.copy()
        dist[short], idx[short] = _build_index(base, metric).search(np.ascontiguousarray(chunk[short]), k)
    return dist, idx


def _to_similarity(dist: np.ndarray, metric: str) -> np.ndarray:
    if metric == "cosine":
        return dist.astype(np.float32, copy=False)
    if metric == "euclidean":
        return -np.sqrt(np.maximum(dist, 0.0)).astype(np.float32)
    return -dist.astype(np.float32, copy=False)


def _drop_self(sims: np.ndarray, idx: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's own index (or its last column when the row itself was not returned)."""
    is_self = idx == rows[:, None]
    column = np.where(is_self.any(axis=1), np.argmax(is_self, axis=1), idx.shape[1] - 1)
    keep = np.ones(idx.shape, dtype=bool)
    keep[np.arange(len(rows)), column] = False
    k = idx.shape[1] - 1
    return sims[keep].reshape(-1, k), idx[keep].reshape(-1, k)


def _sort_desc(sims: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row by similarity descending, ties by base index ascending."""
    order = np.lexsort((idx, -sims), axis=1)
    return np.take_along_axis(sims, order, 1), np.take_along_axis(idx, order, 1)


def search(
    queries: object,
    base: object,
    k: int,
    metric: str = "cosine",
    device: str = "auto",
    exclude_self: bool = False,
    ivf_min_size: int | None = None,
    proposals: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar base rows for every query row: (sims float32 [N, k], idx int64 [N, k]).

    k is clipped to the base size (minus one with ``exclude_self``, where queries must be base
    in the same order and each row's own index is dropped). Exact unless ``ivf_min_size`` is set
    and the base has at least that many rows (and FAISS is installed): then an approximate IVF index.
    ``proposals``: the engine's first-round candidates of every query row, already found (engine
    similarities and indices, k + TIE_MARGIN of them: `both_ways_proposals`); checked exactly like the engine's.
    """
    if metric not in SIMILARITY_METRICS:
        raise ValueError(
            f"unknown similarity metric {metric!r}; choose one of {', '.join(SIMILARITY_METRICS)}"
        )
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    q, b = _as_matrix(queries, "queries"), _as_matrix(base, "base")
    if q.shape[1] != b.shape[1]:
        raise ValueError(f"queries have dimension {q.shape[1]}, base has {b.shape[1]}")
    if exclude_self and q.shape[0] != b.shape[0]:
        raise ValueError("exclude_self needs queries to be the base itself (same rows, same order)")
    k_eff = min(int(k), b.shape[0] - (1 if exclude_self else 0))
    if k_eff < 1 or q.shape[0] == 0:
        k_out = max(k_eff, 0)
        return np.zeros((q.shape[0], k_out), np.float32), np.zeros((q.shape[0], k_out), np.int64)
    if metric == "cosine":
        q, b = _normalised(q), _normalised(b)
    k_search = k_eff + (1 if exclude_self else 0)
    approximate = faiss is not None and ivf_min_size is not None and b.shape[0] >= max(1, ivf_min_size)
    if faiss is not None and not _torch_engine(metric, device, approximate):
        cpu_index = _build_ivf(b, metric, *ivf_params(b.shape[0])) if approximate else _build_index(b, metric)
        gpu_index = faiss.index_cpu_to_all_gpus(cpu_index) if _use_gpu(device, k_search) else None

        def run(chunk: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
            index = gpu_index if gpu_index is not None and kk <= GPU_MAX_K else cpu_index
            found = index.search(chunk, kk)
            # IVF: a query whose probed lists hold fewer than kk vectors is searched exactly.
            return _fill_short_rows(found, b, metric, chunk, kk) if approximate else found
    else:
        run = lambda chunk, kk: _torch_search(chunk, b, kk, metric, device)
    all_sims, all_idx = [], []
    b64 = b.astype(np.float64) if 2 * b.nbytes <= EXACT_BASE_BYTES else None  # exact: float32 -> float64
    for start in range(0, q.shape[0], QUERY_BATCH):
        stop = start + QUERY_BATCH
        sims, idx = _search_rows(
            run
            if proposals is None
            else _first_round(run, proposals[0][start:stop], proposals[1][start:stop]),
            q[start : start + QUERY_BATCH],
            b,
            start,
            k_eff,
            metric,
            exclude_self,
            exact_engine=not approximate,
            base64=b64,
        )
        all_sims.append(sims)
        all_idx.append(idx)
    return np.concatenate(all_sims).astype(np.float32, copy=False), np.concatenate(all_idx)


def _first_round(
    run: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]], dist: np.ndarray, idx: np.ndarray
) -> Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]]:
    """An engine whose first answer (every row of the chunk, as many candidates as proposed) is the one given;
    later rounds (rows re-asked with more candidates) go to `run`."""
    first = [True]

    def engine(chunk: np.ndarray, kk: int) -> tuple[np.ndarray, np.ndarray]:
        if first[0] and len(chunk) == len(dist) and kk == dist.shape[1]:
            first[0] = False
            return dist, idx
        return run(chunk, kk)

    return engine


def both_ways_proposals(
    queries: object,
    base: object,
    k: int,
    k_back: int,
    metric: str = "cosine",
    device: str = "auto",
    ivf_min_size: int | None = None,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]] | None:
    """The engine's first-round candidates of search(queries, base, k) and of search(base, queries, k_back)
    from one pass over their similarity matrix (search's `proposals`), where the torch engine runs exact
    cosine searches; None elsewhere."""
    q, b = _as_matrix(queries, "queries"), _as_matrix(base, "base")
    joint = torch_proposes_cosine(metric, device, ivf_min_size, len(q), len(b))
    if not joint or min(len(q), len(b), k, k_back) < 1 or q.shape[1] != b.shape[1]:
        return None
    return _torch_both_ways(
        _normalised(q), _normalised(b), min(len(b), k + TIE_MARGIN), min(len(q), k_back + TIE_MARGIN), device
    )


def _torch_both_ways(
    q: np.ndarray, b: np.ndarray, wanted: int, wanted_back: int, device: str
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """The row top-`wanted` and the column top-`wanted_back` of q @ b.T (unit rows), TORCH_SCORE_BYTES of it
    at a time: the first-round candidates of both directions' searches."""
    import torch

    dev = _torch_device(device)
    base = torch.from_numpy(b).to(dev)
    values_out, idx_out = [], []
    back_values = torch.empty((len(b), 0), device=dev)
    back_idx = torch.empty((len(b), 0), dtype=torch.int64, device=dev)
    rows = _score_rows(b.shape[0])
    with _full_fp32():
        for lo in range(0, q.shape[0], rows):
            scores = torch.from_numpy(q[lo : lo + rows]).to(dev) @ base.T
            values, idx = scores.topk(wanted, dim=1)
            values_out.append(values.cpu().numpy())
            idx_out.append(idx.cpu().numpy())
            col_values, col_idx = scores.T.topk(min(wanted_back, scores.shape[0]), dim=1)
            back_values = torch.cat([back_values, col_values], dim=1)
            back_idx = torch.cat([back_idx, col_idx + lo], dim=1)
            if back_values.shape[1] > wanted_back:
                back_values, keep = back_values.topk(wanted_back, dim=1)
                back_idx = back_idx.gather(1, keep)
    forward = (np.concatenate(values_out), np.concatenate(idx_out))
    return forward, (back_values.cpu().numpy(), back_idx.cpu().numpy())


def _search_rows(
    run: Callable[[np.ndarray, int], tuple[np.ndarray, np.ndarray]],
    chunk: np.ndarray,
    base: np.ndarray,
    start: int,
    k: int,
    metric: str,
    exclude_self: bool,
    exact_engine: bool = True,
    base64: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of a chunk of queries: the engine proposes candidates, exact similarities decide.

    The engine (FAISS, float32 BLAS) is asked for TIE_MARGIN more candidates than needed; their
    similarities are recomputed exactly (float64, the same value for a pair wherever it sits in the
    base) and rows are ordered by similarity, then base index. A candidate the engine did not return
    has an engine similarity at most the lowest it returned, so an exact one at most that plus the
    engine's error (ENGINE_ERROR_SAFETY times the largest error seen on the returned candidates). A
    row where that bound reaches its k-th exact similarity (ties, or near-ties the engine's rounding
    could have ordered either way) is asked again with twice as many, up to the whole base. So the
    answer does not depend on how the base is cut into shards (models/shards.py) nor on rounding.
    An approximate engine (IVF) makes no such promise: its candidates are ordered, never re-asked.
    """
    m = base.shape[0]
    sims_out = np.empty((len(chunk), k), np.float32)
    idx_out = np.empty((len(chunk), k), np.int64)
    pending = np.arange(len(chunk))
    wanted = min(m, k + (1 if exclude_self else 0) + TIE_MARGIN)
    while len(pending):
        queries = np.ascontiguousarray(chunk[pending])
        dist, idx = run(queries, wanted)
        idx = idx.astype(np.int64, copy=False)
        engine = _to_similarity(dist, metric).astype(np.float64)
        sims = exact_similarity(queries, base, idx, metric, base64)
        valid = idx >= 0
        error = np.abs(np.where(valid, engine - sims, 0.0)).max(axis=1)  # per row: errors grow near 0 (L2)
        lowest_engine = np.where(valid, engine, np.inf).min(axis=1)
        if exclude_self:
            sims, idx = _drop_self(sims, idx, start + pending.astype(np.int64))
        sims, idx = _sort_desc(sims, idx)
        if exact_engine and wanted < m:
            slack = ENGINE_ERROR_SAFETY * error + 1e-7 * (1.0 + np.abs(lowest_engine))
            open_ended = lowest_engine + slack >= sims[:, k - 1]
        else:
            open_ended = np.zeros(len(pending), bool)
        done = ~open_ended
        sims_out[pending[done]], idx_out[pending[done]] = sims[done, :k], idx[done, :k]
        pending, wanted = pending[open_ended], min(m, 2 * wanted)
    return sims_out, idx_out


def exact_similarity(
    queries: np.ndarray, base: np.ndarray, idx: np.ndarray, metric: str, base64: np.ndarray | None = None
) -> np.ndarray:
    """Similarity of every query to the base rows idx [N, c] (float64 sums, float32 out; -inf for idx < 0).
    `base64`, when given, is the base already in float64 (the same values: the conversion is exact)."""
    n, c = idx.shape
    out = np.empty((n, c), np.float32)
    rows = max(1, EXACT_CHUNK_BYTES // max(1, 8 * c * base.shape[1]))
    for lo in range(0, n, rows):
        sel = idx[lo : lo + rows]
        q = queries[lo : lo + rows].astype(np.float64)[:, None, :]  # [r, 1, D]
        rows_of = np.maximum(sel, 0)
        b = base64[rows_of] if base64 is not None else base[rows_of].astype(np.float64)  # [r, c, D]
        if metric == "cosine":
            sims = np.einsum("rxd,rcd->rc", q, b)
        elif metric == "euclidean":
            sims = -np.sqrt(np.square(b - q).sum(axis=2))
        else:
            sims = -np.abs(b - q).sum(axis=2)
        out[lo : lo + rows] = np.where(sel < 0, -np.inf, sims)
    return out
