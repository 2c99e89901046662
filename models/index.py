"""Exact k-nearest-neighbour search with FAISS; similarities are always 'higher = closer'."""

from __future__ import annotations

import numpy as np

try:  # FAISS is the engine; a torch search stands in on hosts without it (same results, exact)
    import faiss
except ImportError:  # pragma: no cover - exercised on GPU hosts that carry no faiss build
    faiss = None

SIMILARITY_METRICS = ("cosine", "euclidean", "manhattan")
QUERY_BATCH = 16384
GPU_MAX_K = 2048


def _as_matrix(x: object, what: str) -> np.ndarray:
    arr = np.ascontiguousarray(np.asarray(x, dtype=np.float32))
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-D array [N, D], got shape {arr.shape}")
    return arr


def _normalised(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return np.ascontiguousarray(x / np.maximum(norms, 1e-12), dtype=np.float32)


def _build_index(base: np.ndarray, metric: str) -> "faiss.Index":
    d = base.shape[1]
    if metric == "cosine":
        index = faiss.IndexFlatIP(d)
    elif metric == "euclidean":
        index = faiss.IndexFlatL2(d)
    else:
        index = faiss.IndexFlat(d, faiss.METRIC_L1)
    index.add(base)
    return index


def _use_gpu(device: str, k: int) -> bool:
    if str(device).lower() == "cpu" or k > GPU_MAX_K:
        return False
    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def _torch_search(q: np.ndarray, b: np.ndarray, k: int, metric: str, device: str) -> tuple[np.ndarray, np.ndarray]:
    """Exact search with torch (cuda when asked and present): raw FAISS-style distances and indices."""
    import torch

    dev = torch.device("cuda" if str(device).lower() != "cpu" and torch.cuda.is_available() else "cpu")
    base = torch.from_numpy(b).to(dev)
    query = torch.from_numpy(q).to(dev)
    if metric == "cosine":
        scores = query @ base.T
        values, idx = scores.topk(k, dim=1)
    else:
        dist = torch.cdist(query, base, p=2.0 if metric == "euclidean" else 1.0)
        values, idx = dist.topk(k, dim=1, largest=False)
        values = values.square() if metric == "euclidean" else values
    return values.cpu().numpy(), idx.cpu().numpy()


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
    order = np.argsort(-sims, axis=1, kind="stable")
    return np.take_along_axis(sims, order, 1), np.take_along_axis(idx, order, 1)


def search(
    queries: object,
    base: object,
    k: int,
    metric: str = "cosine",
    device: str = "auto",
    exclude_self: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The k most similar base rows for every query row: (sims float32 [N, k], idx int64 [N, k]).

    k is clipped to the base size (minus one with ``exclude_self``, where queries must be base
    in the same order and each row's own index is dropped).
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
    if faiss is not None:
        index = _build_index(b, metric)
        if _use_gpu(device, k_search):
            index = faiss.index_cpu_to_all_gpus(index)
        run = lambda chunk: index.search(chunk, k_search)  # noqa: E731
    else:
        run = lambda chunk: _torch_search(chunk, b, k_search, metric, device)  # noqa: E731
    all_sims, all_idx = [], []
    for start in range(0, q.shape[0], QUERY_BATCH):
        dist, idx = run(q[start : start + QUERY_BATCH])
        sims, idx = _to_similarity(dist, metric), idx.astype(np.int64, copy=False)
        if exclude_self:
            rows = np.arange(start, start + idx.shape[0], dtype=np.int64)
            sims, idx = _drop_self(sims, idx, rows)
        sims, idx = _sort_desc(sims, idx)
        all_sims.append(sims)
        all_idx.append(idx)
    return np.concatenate(all_sims).astype(np.float32, copy=False), np.concatenate(all_idx)
