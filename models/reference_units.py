"""The reference check's units: images that are not independent are tested together.

Known groups (DICOM patients, volumes) are units; images whose normalised 16x16 thumbnails are
near-duplicates (neighbouring slices of one volume) are joined into one unit as well, so correlated slices
never count as many independent pieces of evidence (`check_units`). `thumbnail_neighbours` also serves the
paired test (models/reference_pairs.py), on thumbnails of intensity ranks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synthaudit.models.reference_features import CHUNK, _area_resize, _normalised_thumbnails

UNIT_THUMB_SIDE = 16  # thumbnails whose cosine links near-duplicates into one unit
NEAR_DUPLICATE_COSINE = 0.97  # measured: docs/design.md, "the reference check"
UNIT_NEIGHBOURS = 8  # near-duplicate links looked for per image (bounded memory)


def _union_find_labels(n: int, pairs: np.ndarray) -> np.ndarray:
    parent = np.arange(n)

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    for a, b in pairs.tolist():
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    roots = np.array([root(i) for i in range(n)])
    return np.unique(roots, return_inverse=True)[1]


@dataclass(frozen=True)
class Neighbours:
    """Each image's nearest others by normalised 16x16 thumbnail: indices and cosines [N, k], best first."""

    index: np.ndarray
    cosine: np.ndarray


def _rank_thumbnails(x: np.ndarray, side: int) -> np.ndarray:
    """Normalised thumbnails of each image's intensity ranks (ties averaged, on a 2x finer grid first):
    unchanged by any monotone change of intensity (gamma, contrast, brightness)."""
    from scipy.stats import rankdata

    fine = _area_resize(x, min(2 * side, x.shape[1], x.shape[2]))
    ranks = rankdata(fine.reshape(fine.shape[0], -1), axis=1).reshape(fine.shape).astype(np.float32)
    return _normalised_thumbnails(ranks, side)


def thumbnail_neighbours(images: np.ndarray, k: int = UNIT_NEIGHBOURS, ranks: bool = False) -> Neighbours:
    """The k nearest other images of each image by normalised 16x16 thumbnail (`ranks`: of the intensity
    ranks, see _rank_thumbnails), in blocks: memory stays bounded."""
    imgs = np.asarray(images)
    thumb = _rank_thumbnails if ranks else _normalised_thumbnails
    thumbs = np.concatenate(
        [
            thumb(imgs[i : i + CHUNK].astype(np.float32) / 255.0, UNIT_THUMB_SIDE)
            for i in range(0, len(imgs), CHUNK)
        ]
    ).astype(np.float32)
    n = thumbs.shape[0]
    k = max(1, min(k, n - 1))
    index = np.zeros((n, k), dtype=np.int64)
    cosine = np.full((n, k), -np.inf, dtype=np.float32)
    if n < 2:
        return Neighbours(index, cosine)
    for start in range(0, n, 1024):
        sims = thumbs[start : start + 1024] @ thumbs.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        top_sims = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_sims, axis=1, kind="stable")
        index[start : start + len(rows)] = np.take_along_axis(top, order, axis=1)
        cosine[start : start + len(rows)] = np.take_along_axis(top_sims, order, axis=1)
    return Neighbours(index, cosine)


def near_duplicate_pairs(
    images: np.ndarray, threshold: float = NEAR_DUPLICATE_COSINE, neighbours: Neighbours | None = None
) -> np.ndarray:
    """Pairs (i, j), i < j, whose normalised 16x16 thumbnails have cosine >= threshold (each image's
    UNIT_NEIGHBOURS nearest only)."""
    nb = thumbnail_neighbours(images) if neighbours is None else neighbours
    r, c = np.nonzero(nb.cosine >= threshold)
    if r.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    pairs = np.c_[r, nb.index[r, c]]
    return np.unique(np.sort(pairs, axis=1), axis=0).astype(np.int64)


def check_units(
    images: np.ndarray, groups: list[str | None] | None = None, neighbours: Neighbours | None = None
) -> tuple[np.ndarray, str]:
    """(unit index per image, how units were formed): known groups joined with near-duplicate chains."""
    n = len(images)
    pairs = [near_duplicate_pairs(images, neighbours=neighbours)]
    grouping = "near-duplicates"
    if groups is not None:
        first: dict[str, int] = {}
        linked = []
        for i, g in enumerate(groups):
            if g:
                linked.append((first.setdefault(g, i), i))
        if linked:
            pairs.append(np.array(linked, dtype=np.int64))
            grouping = "known groups and near-duplicates"
    return _union_find_labels(n, np.concatenate(pairs)), grouping
