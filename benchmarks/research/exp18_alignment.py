"""exp18: alignment-tolerant variants of the default score, on the stress suite and the existing folders.

The default (whitened 32-px NCC thumbnails, density ratio + attribution) against:
  aug      the same score where every similarity involving a real image is the max over a fixed set of small
           geometric versions of that real image (identity, shifts of 1 and 2 thumbnail pixels along x and y,
           rotations of +-5 and +-10 degrees, scales of +-5 and +-10 %: 17 versions), for real->generated AND
           real->real (so a not-used image gets as many chances as a used one), and generated->real
           attribution over all versions. The whitening is fitted on the un-augmented images, as in the default.
  aug_small the same with 9 versions (shifts of 1 thumbnail pixel, +-5 degrees, +-5 %)
  fuse_aug rank average of default and aug
  maxrank  the larger of the two normalised ranks (default, aug or aug_small)
  mixed    the default's density ratio with aug_small's attribution, and the other way round
An earlier run also had `coarse` (the default's score on 16-px thumbnails) and its rank fusion with the default:
translate-medium 0.754 / 0.042 and 0.734 / 0.042, rotate-medium 0.861 / 0.214 and 0.864 / 0.142, dev
0.963 / 0.730 and 0.970 / 0.738, hard 0.823 / 0.150 and 0.826 / 0.174, scale-medium 0.969 / 0.686 and
0.971 / 0.626 (AUC / TPR@1%FPR): no help with misalignment.
Images are loaded with the pipeline's loader at 64 px, thumbnails by the pixels encoder (bilinear, antialias).
Labels only score. Pure numpy/torch matrix products (exact search).

  .venv/bin/python benchmarks/research/exp18_alignment.py FOLDER [FOLDER ...]
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import roc_auc, tpr_at_fpr  # noqa: E402

from models import score as S  # noqa: E402
from models.encoders import PixelsEncoder  # noqa: E402
from models.io import load_images  # noqa: E402
from models.results import read_labels_csv  # noqa: E402


def versions(side: int, small: bool = False) -> list[tuple[float, float, float, float]]:
    """(dx, dy, angle_deg, zoom) of the 17 geometric versions (9 with `small`: shifts of 1 thumbnail pixel,
    +-5 degrees, +-5 %); shifts in thumbnail pixels of a 32-px side."""
    px = side / 32
    shifts, angles, zooms = ((-1, 1), (-5, 5), (0.95, 1.05)) if small else (
        (-2, -1, 1, 2), (-10, -5, 5, 10), (0.9, 0.95, 1.05, 1.1))
    out = [(0.0, 0.0, 0.0, 1.0)]
    out += [(d * px, 0.0, 0.0, 1.0) for d in shifts] + [(0.0, d * px, 0.0, 1.0) for d in shifts]
    out += [(0.0, 0.0, a, 1.0) for a in angles] + [(0.0, 0.0, 0.0, z) for z in zooms]
    return out


def warp(images: np.ndarray, dx: float, dy: float, angle: float, zoom: float) -> np.ndarray:
    x = torch.from_numpy(images).float()[:, None]
    side = images.shape[1]
    a = math.radians(angle)
    c, s = math.cos(a) / zoom, math.sin(a) / zoom
    theta = torch.tensor([[c, -s, -2 * dx / side], [s, c, -2 * dy / side]], dtype=torch.float32)
    grid = F.affine_grid(theta.expand(len(x), 2, 3), list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[:, 0].round().clamp(0, 255).to(torch.uint8).numpy()


def thumbs(images: np.ndarray, side: int) -> np.ndarray:
    return PixelsEncoder("pixels", side=side, device="cpu").embed(images, 512)


def topk(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argpartition(-sims, kth=min(k, sims.shape[1] - 1), axis=1)[:, :k]
    part = np.take_along_axis(sims, idx, 1)
    order = np.argsort(-part, axis=1)
    return np.take_along_axis(part, order, 1), np.take_along_axis(idx, order, 1)


def parts_from_sims(rg: np.ndarray, rr: np.ndarray, gr_full: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kNN density ratio, attribution margin) from full similarity matrices: rg [N, M], rr [N, N] (self
    excluded), gr_full [M, N]."""
    n = rg.shape[0]
    k = S.default_k(n)
    rg_s, _ = topk(rg, k)
    rr_s, _ = topk(rr, k)
    gr_s, gr_i = topk(gr_full, 2)
    return S.knn_log_ratio(rg_s, rr_s, k), S.attribution_margin(gr_s, gr_i, n)


PARTS: dict[str, tuple[np.ndarray, np.ndarray]] = {}


def score_from_sims(rg: np.ndarray, rr: np.ndarray, gr_full: np.ndarray, key: str = "") -> np.ndarray:
    """Default score from full similarity matrices (its two parts kept in PARTS[key])."""
    ratio, attribution = parts_from_sims(rg, rr, gr_full)
    PARTS[key] = (ratio, attribution)
    return S.rank_fuse([ratio, attribution])


def default_score(real: np.ndarray, gen: np.ndarray, side: int) -> np.ndarray:
    fr, fg = thumbs(real, side), thumbs(gen, side)
    w = S.fit_whitening(np.concatenate([fr, fg]))
    wr, wg = S.apply_whitening(fr, w), S.apply_whitening(fg, w)
    rr = wr @ wr.T
    np.fill_diagonal(rr, -np.inf)
    rg = wr @ wg.T
    return score_from_sims(rg, rr, rg.T, f"default{side}")


def aug_score(real: np.ndarray, gen: np.ndarray, side: int, small: bool = False) -> np.ndarray:
    fr, fg = thumbs(real, side), thumbs(gen, side)
    w = S.fit_whitening(np.concatenate([fr, fg]))
    wr, wg = S.apply_whitening(fr, w), S.apply_whitening(fg, w)
    n = len(real)
    rg = np.full((n, len(gen)), -np.inf, np.float32)
    rr = np.full((n, n), -np.inf, np.float32)
    for v in versions(real.shape[1], small):
        wv = S.apply_whitening(thumbs(warp(real, *v), side), w)
        np.maximum(rg, wv @ wg.T, out=rg)
        np.maximum(rr, wv @ wr.T, out=rr)
    np.fill_diagonal(rr, -np.inf)
    return score_from_sims(rg, rr, rg.T, "aug_small" if small else "aug")


def main() -> None:
    folders = [Path(p) for p in sys.argv[1:]]
    print("| folder | default AUC / TPR@1% | aug_small | fuse(default, aug_small) | ratio default + attribution "
          "aug_small | ratio aug_small + attribution default | t aug (s) |")
    print("|---|---|---|---|---|---|---:|")
    for folder in folders:
        labels = read_labels_csv(folder / "labels.csv")
        real_set = load_images(folder / "real", 64)
        gen = load_images(folder / "generated", 64).images
        y = np.array([labels[i] for i in real_set.ids])
        real = real_set.images
        d = default_score(real, gen, 32)
        t = time.perf_counter()
        a9 = aug_score(real, gen, 32, small=True)
        ta = time.perf_counter() - t
        (rd, ad), (r9, a9p) = PARTS["default32"], PARTS["aug_small"]
        variants = [d, a9, S.rank_fuse([d, a9]), S.rank_fuse([rd, a9p]), S.rank_fuse([r9, ad])]
        cells = [f"{roc_auc(y, s):.3f} / {tpr_at_fpr(y, s, 0.01):.3f}" for s in variants]
        print(f"| {folder.name} | " + " | ".join(cells) + f" | {ta:.0f} |", flush=True)


if __name__ == "__main__":
    main()
