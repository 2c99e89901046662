"""The default's alignment-tolerant thumbnail search, and the label-free gate and probe that turn it on.

A copy that was shifted, rotated or scaled a little before it reached the generated set is far from its
source in the thumbnail view, so the default misses it (docs/benchmarks.md, the copy-transform stress suite).
The gate compares every generated image with 9 geometric versions of each real image (identity; shifts of
one thumbnail pixel along x and y; +-5 degrees; +-5 % scale). Once it has fired, the search adds the other
shifts of a half-pixel grid within one thumbnail pixel (diagonals and half pixels: 20 more, 29 in all) and
keeps, for every (real, generated) and (real, other real) pair, the largest similarity over the versions
(docs/research.md, exp18 `aug_small`, exp20 `half1`).

When the gate stays closed, a probe asks the same question of 12 wider versions (shifts of two thumbnail
pixels, +-10 degrees, +-10 %) on at most PROBE_SAMPLE generated images; when it fires, the search runs over
33 versions (a one-pixel grid of shifts within two pixels, +-5 and +-10 degrees, +-5 and +-10 % scale; exp21).

It is used only where the audit's own images ask for it (exp19): per generated image, d_id is its distance to
the nearest real thumbnail and d_aug the same over the versions; when more than GATE_SHARE of the generated
images have d_aug / d_id < GATE_RATIO (a version halves their nearest distance), the gate fires. Both
constants are round design values, not fitted to any folder; the statistic is computed from the audit's
images only, never from labels. With the gate off the search is exactly the default's.

The top-k merges here are exact: a base row in the top k of the max over versions is in the top k of the
version where the max is reached, so merging each version's top k (duplicates dropped, the larger similarity
kept) gives the top k of the max; rows are ordered by similarity, then base index, like models/index.py.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

ALIGNED_ENCODERS = ("pixels_whitened",)  # the views whose search may be aligned (cosine only)
GATE_RATIO = 0.5  # a generated image "matches better misaligned" when a version halves its nearest distance
GATE_SHARE = 0.01  # the gate fires when more than 1 % of the generated images do
EXACT_COPY = 1e-6  # distance floor: an exact copy (distance 0 in both views) counts as ratio 1, not 0
SHIFT_PIXELS = (-1, 1)  # in thumbnail pixels
ANGLES = (-5.0, 5.0)  # degrees
ZOOMS = (0.95, 1.05)


FINE_STEP = 0.5  # once the gate has fired: every shift on a half-thumbnail-pixel grid ...
FINE_RADIUS = 1.0  # ... within one thumbnail pixel of the origin along each axis (exp20)


def versions(image_size: int, thumbnail_side: int) -> list[tuple[float, float, float, float]]:
    """(dx, dy, angle_deg, zoom) of the gate's 9 versions, identity first; shifts in image pixels (one
    thumbnail pixel each)."""
    px = image_size / thumbnail_side
    out = [(0.0, 0.0, 0.0, 1.0)]
    out += [(d * px, 0.0, 0.0, 1.0) for d in SHIFT_PIXELS] + [(0.0, d * px, 0.0, 1.0) for d in SHIFT_PIXELS]
    out += [(0.0, 0.0, a, 1.0) for a in ANGLES] + [(0.0, 0.0, 0.0, z) for z in ZOOMS]
    return out


def fine_versions(image_size: int, thumbnail_side: int) -> list[tuple[float, float, float, float]]:
    """The versions the search adds once the gate has fired: the shifts of the fine grid (FINE_STEP,
    FINE_RADIUS) that the gate's versions lack, diagonals and half pixels among them (exp20: a copy moved
    along a diagonal is 0.9 thumbnail pixels from the gate's nearest shift)."""
    n = round(FINE_RADIUS / FINE_STEP)
    grid = [(i * FINE_STEP, j * FINE_STEP) for j in range(-n, n + 1) for i in range(-n, n + 1)]
    return _missing_shifts(grid, versions(image_size, thumbnail_side), image_size / thumbnail_side)


def _missing_shifts(
    grid: list[tuple[float, float]], known: list[tuple[float, float, float, float]], px: float
) -> list[tuple[float, float, float, float]]:
    """Pure shifts (in image pixels) of the grid points (in thumbnail pixels) that no `known` version has."""
    have = {(round(v[0] / px, 6), round(v[1] / px, 6)) for v in known}
    return [(dx * px, dy * px, 0.0, 1.0) for dx, dy in grid if (round(dx, 6), round(dy, 6)) not in have]


PROBE_SHIFT = 2.0  # thumbnail pixels: the probe looks twice as far as the gate ...
PROBE_ANGLES = (-10.0, 10.0)  # ... and turns and resizes twice as much
PROBE_ZOOMS = (0.9, 1.1)
PROBE_SAMPLE = 2000  # generated images the probe compares (evenly spaced rows: the same sharded or not)
WIDE_RADIUS = 2  # a fired probe's search: every shift on a one-pixel grid within this many thumbnail pixels


def probe_versions(image_size: int, thumbnail_side: int) -> list[tuple[float, float, float, float]]:
    """The probe's 12 versions, asked only when the gate stays closed: shifts of PROBE_SHIFT thumbnail pixels
    along x, y and the diagonals, PROBE_ANGLES, PROBE_ZOOMS (exp21)."""
    px = PROBE_SHIFT * image_size / thumbnail_side
    out = [(i * px, j * px, 0.0, 1.0) for j in (-1, 0, 1) for i in (-1, 0, 1) if (i, j) != (0, 0)]
    return out + [(0.0, 0.0, a, 1.0) for a in PROBE_ANGLES] + [(0.0, 0.0, 0.0, z) for z in PROBE_ZOOMS]


def wide_versions(image_size: int, thumbnail_side: int) -> list[tuple[float, float, float, float]]:
    """The versions a fired probe's search adds to the gate's and the probe's: the shifts of the one-pixel
    grid within WIDE_RADIUS that neither has (33 versions in all, with the identity)."""
    span = range(-WIDE_RADIUS, WIDE_RADIUS + 1)
    grid = [(float(i), float(j)) for j in span for i in span]
    known = versions(image_size, thumbnail_side) + probe_versions(image_size, thumbnail_side)
    return _missing_shifts(grid, known, image_size / thumbnail_side)


def version_set(kind: str, image_size: int, thumbnail_side: int) -> list[tuple[float, float, float, float]]:
    """The non-identity versions of one kind: "gate", "fine" (a fired gate adds), "probe", "wide" (a fired
    probe adds)."""
    if kind == "gate":
        return versions(image_size, thumbnail_side)[1:]
    chosen = {"fine": fine_versions, "probe": probe_versions, "wide": wide_versions}.get(kind)
    if chosen is None:
        raise ValueError(f"unknown version kind {kind!r}")
    return chosen(image_size, thumbnail_side)


def probe_rows(n_generated: int) -> np.ndarray:
    """The generated rows the probe compares: all of them up to PROBE_SAMPLE, else PROBE_SAMPLE evenly
    spaced (a function of the count only, so a sharded audit probes the same rows)."""
    if n_generated <= PROBE_SAMPLE:
        return np.arange(n_generated)
    return np.unique(np.linspace(0, n_generated - 1, PROBE_SAMPLE).round().astype(np.int64))


def warp(images: np.ndarray, dx: float, dy: float, angle: float, zoom: float) -> np.ndarray:
    """uint8 images [N, S, S] shifted by (dx, dy) px, rotated by angle degrees, zoomed (bilinear, border
    padding)."""
    import torch
    import torch.nn.functional as F

    if len(images) == 0:
        return images.copy()
    x = torch.from_numpy(np.ascontiguousarray(images)).float()[:, None]
    side = images.shape[1]
    a = math.radians(angle)
    c, s = math.cos(a) / zoom, math.sin(a) / zoom
    theta = torch.tensor([[c, -s, -2 * dx / side], [s, c, -2 * dy / side]], dtype=torch.float32)
    # one transform for every image: the grid is made once (the same values affine_grid makes per image)
    grid = F.affine_grid(theta[None], [1, *x.shape[1:]], align_corners=False).expand(len(x), -1, -1, -1)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def merge_versions(
    parts: Sequence[tuple[np.ndarray, np.ndarray]], k: int, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """The top k of the max over versions, from each version's top-k (sims [N, k_i], base idx [N, k_i]).

    A base index found by several versions is kept once, with its largest similarity; `exclude` (one base
    index per row, or None) is dropped from its row. Rows ordered by similarity descending, then index.
    """
    sims = np.concatenate([np.asarray(s, dtype=np.float32) for s, _ in parts], axis=1)
    idx = np.concatenate([np.asarray(i, dtype=np.int64) for _, i in parts], axis=1)
    if exclude is not None:
        sims = np.where(idx == np.asarray(exclude, dtype=np.int64)[:, None], -np.inf, sims).astype(np.float32)
    order = np.lexsort((-sims, idx), axis=1)  # by index, the largest similarity first
    idx, sims = np.take_along_axis(idx, order, 1), np.take_along_axis(sims, order, 1)
    repeat = np.zeros(idx.shape, dtype=bool)
    repeat[:, 1:] = idx[:, 1:] == idx[:, :-1]
    sims = np.where(repeat, -np.inf, sims).astype(np.float32)
    order = np.lexsort((idx, -sims), axis=1)[:, :k]
    return np.take_along_axis(sims, order, 1), np.take_along_axis(idx, order, 1)


def distance_ratios(nearest_id: np.ndarray, nearest_aug: np.ndarray) -> np.ndarray:
    """d_aug / d_id of every generated image, from its nearest cosine similarity to the real thumbnails
    (identity only, and over every version); unit vectors, so d = sqrt(2 - 2 s)."""
    d_id = np.sqrt(np.clip(2.0 - 2.0 * np.asarray(nearest_id, dtype=np.float64), 0.0, None))
    d_aug = np.sqrt(np.clip(2.0 - 2.0 * np.asarray(nearest_aug, dtype=np.float64), 0.0, None))
    return np.maximum(d_aug, EXACT_COPY) / np.maximum(d_id, EXACT_COPY)


def gate(nearest_id: np.ndarray, nearest_aug: np.ndarray) -> tuple[float, bool]:
    """(share of generated images whose nearest distance a version halves, whether the gate fires)."""
    if len(nearest_id) == 0:
        return 0.0, False
    share = float((distance_ratios(nearest_id, nearest_aug) < GATE_RATIO).mean())
    return share, share > GATE_SHARE
