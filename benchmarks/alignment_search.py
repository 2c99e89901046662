"""Alignment-tolerant variants of the default score: a search over small shifts, rotations and scales."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from bench_data import DDPM_FOLDERS, SHARED_BENCH, load_bench
from bench_metrics import auc_tpr
from whitened_recipe import pixel_features, whiten

from synthaudit.models import score as S

DETAILS = """\
Columns (AUC / TPR@1%FPR): the default (re-implemented from full similarity matrices: exact search);
aug_small, the same score where every similarity involving a real image is the max over 9 geometric versions
of it (identity, shifts of 1 thumbnail pixel along x and y, +-5 degrees, +-5 % scale), for real->generated
AND real->real, and each generated image's attribution over all versions (the whitening is fitted on the
un-augmented images); their rank fusion; the default's density ratio with aug_small's attribution and the
other way round. `versions(..., small=False)` gives the 17-version `aug` of docs/research.md. Labels only
score.
  .venv/bin/python benchmarks/alignment_search.py ../shared/bench/fmnist-ddpm-dev \\
      ../shared/bench/fmnist-ddpm-dev-hard bench-local/stress-fmnist/{translate,rotate,scale}-medium"""

SIDE = 32  # thumbnail side of the default


def versions(side: int, small: bool = False) -> list[tuple[float, float, float, float]]:
    """(dx, dy, angle_deg, zoom) of the 17 geometric versions (9 with `small`: shifts of 1 thumbnail pixel,
    +-5 degrees, +-5 %); shifts in thumbnail pixels of a 32-px side."""
    px = side / 32
    shifts, angles, zooms = (
        ((-1, 1), (-5, 5), (0.95, 1.05))
        if small
        else ((-2, -1, 1, 2), (-10, -5, 5, 10), (0.9, 0.95, 1.05, 1.1))
    )
    out = [(0.0, 0.0, 0.0, 1.0)]
    out += [(d * px, 0.0, 0.0, 1.0) for d in shifts] + [(0.0, d * px, 0.0, 1.0) for d in shifts]
    out += [(0.0, 0.0, a, 1.0) for a in angles] + [(0.0, 0.0, 0.0, z) for z in zooms]
    return out


def warp(images: np.ndarray, dx: float, dy: float, angle: float, zoom: float) -> np.ndarray:
    """uint8 images shifted by (dx, dy) px, rotated by angle degrees, zoomed (bilinear, border padding)."""
    x = torch.from_numpy(images).float()[:, None]
    side = images.shape[1]
    a = math.radians(angle)
    c, s = math.cos(a) / zoom, math.sin(a) / zoom
    theta = torch.tensor([[c, -s, -2 * dx / side], [s, c, -2 * dy / side]], dtype=torch.float32)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def topk(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k largest similarities of each row, sorted descending, and their columns."""
    idx = np.argpartition(-sims, kth=min(k, sims.shape[1] - 1), axis=1)[:, :k]
    part = np.take_along_axis(sims, idx, 1)
    order = np.argsort(-part, axis=1)
    return np.take_along_axis(part, order, 1), np.take_along_axis(idx, order, 1)


def score_parts(rg: np.ndarray, rr: np.ndarray, gr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kNN density ratio, attribution margin) from full similarity matrices: rg [N, M], rr [N, N] (self
    excluded), gr [M, N]."""
    n = rg.shape[0]
    k = S.default_k(n)
    rg_s, _ = topk(rg, k)
    rr_s, _ = topk(rr, k)
    gr_s, gr_i = topk(gr, 2)
    return S.knn_log_ratio(rg_s, rr_s, k), S.attribution_margin(gr_s, gr_i, n)


def default_parts(real: np.ndarray, gen: np.ndarray, side: int = SIDE) -> tuple[np.ndarray, np.ndarray]:
    """The default's two parts, from exact similarity matrices of the whitened thumbnails."""
    wr, wg = whiten(pixel_features(real, side), pixel_features(gen, side))
    rr = wr @ wr.T
    np.fill_diagonal(rr, -np.inf)
    rg = wr @ wg.T
    return score_parts(rg, rr, rg.T)


def aug_parts(
    real: np.ndarray, gen: np.ndarray, side: int = SIDE, small: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """The same two parts, every similarity involving a real image the max over its geometric versions."""
    return parts_over(real, gen, versions(real.shape[1], small), side)


def parts_over(
    real: np.ndarray, gen: np.ndarray, vs: list[tuple[float, float, float, float]], side: int = SIDE
) -> tuple[np.ndarray, np.ndarray]:
    """The default's two parts, every similarity involving a real image the max over the versions `vs`
    (identity included when wanted; the whitening fitted on the un-augmented images)."""
    fr, fg = pixel_features(real, side), pixel_features(gen, side)
    w = S.fit_whitening(np.concatenate([fr, fg]))
    wr, wg = S.apply_whitening(fr, w), S.apply_whitening(fg, w)
    n = len(real)
    rg = np.full((n, len(gen)), -np.inf, np.float32)
    rr = np.full((n, n), -np.inf, np.float32)
    for v in vs:
        wv = S.apply_whitening(pixel_features(warp(real, *v), side), w)
        np.maximum(rg, wv @ wg.T, out=rg)
        np.maximum(rr, wv @ wr.T, out=rr)
    np.fill_diagonal(rr, -np.inf)
    return score_parts(rg, rr, rg.T)


def add_folders_argument(ap: argparse.ArgumentParser) -> None:
    """Positional benchmark folders (default: the two shared DDPM folders)."""
    ap.add_argument(
        "folders",
        type=Path,
        nargs="*",
        default=[SHARED_BENCH / f for f in DDPM_FOLDERS],
        help="benchmark folders (real/, generated/, labels.csv); default: the two under ../shared/bench",
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, epilog=DETAILS, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_folders_argument(ap)
    args = ap.parse_args()
    print(
        "| folder | default AUC / TPR@1% | aug_small | fuse(default, aug_small) "
        "| ratio default + attribution "
        "aug_small | ratio aug_small + attribution default | t aug (s) |"
    )
    print("|---|---|---|---|---|---|---:|")
    for folder in args.folders:
        bench = load_bench(folder)
        rd, ad = default_parts(bench.real, bench.generated)
        t = time.perf_counter()
        r9, a9 = aug_parts(bench.real, bench.generated, small=True)
        ta = time.perf_counter() - t
        d, aug = S.rank_fuse([rd, ad]), S.rank_fuse([r9, a9])
        variants = [d, aug, S.rank_fuse([d, aug]), S.rank_fuse([rd, a9]), S.rank_fuse([r9, ad])]
        cells = [auc_tpr(bench.y, s) for s in variants]
        print(f"| {folder.name} | " + " | ".join(cells) + f" | {ta:.0f} |", flush=True)


if __name__ == "__main__":
    main()
