"""Per-patch normalised pixels through the default's recipe, against its whole-image NCC thumbnails."""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F
from bench_data import add_folder_arguments, folder_paths, load_bench
from bench_metrics import evaluate, fmt
from whitened_recipe import pixel_features, recipe_score

DETAILS = """\
Pre-declared variants, each whitened on real + generated, then density_attribution_score (K = 1 % of N):
  default  32x32 NCC thumbnails (the shipped view), whole-image normalisation
  p4@32    32x32 thumbnails cut into 4x4 patches, each mean-centred and L2-normalised (1024-d)
  p8@32    32x32 thumbnails, 8x8 patches (1024-d)
  p8@64    the 64x64 images, 8x8 patches (4096-d, the MAE's patch grid)
Labels only score.
  .venv/bin/python benchmarks/patch_ncc.py"""


def thumbnails(images: np.ndarray, side: int) -> np.ndarray:
    """uint8 [N, S, S] -> float32 [N, s, s] in [0, 1], s = min(S, side): the `pixels` encoder's resize
    (bilinear, antialiased) without its centring, so that background patches stay exactly zero."""
    x = torch.from_numpy(images).float()[:, None] / 255
    if images.shape[-1] > side:
        x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
    return x[:, 0].numpy()


def patch_ncc(images: np.ndarray, patch: int) -> np.ndarray:
    """[N, S, S] -> [N, S*S]: every patch x patch block mean-centred and L2-normalised, then the whole vector
    L2-normalised (so each patch weighs the same)."""
    n, s, _ = images.shape
    g = s // patch
    x = images[:, : g * patch, : g * patch].reshape(n, g, patch, g, patch).transpose(0, 1, 3, 2, 4)
    x = x.reshape(n, g * g, patch * patch).astype(np.float32)
    x = x - x.mean(axis=2, keepdims=True)
    x = x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-6)
    x = x.reshape(n, -1)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


VARIANTS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "default (whole-image NCC @32)": lambda im: pixel_features(im, 32),
    "p4@32": lambda im: patch_ncc(thumbnails(im, 32), 4),
    "p8@32": lambda im: patch_ncc(thumbnails(im, 32), 8),
    "p8@64": lambda im: patch_ncc(im.astype(np.float32) / 255, 8),
}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, epilog=DETAILS, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_folder_arguments(ap)
    args = ap.parse_args()
    for folder in folder_paths(args):
        bench = load_bench(folder)
        print(f"== {bench.name}")
        for name, features in VARIANTS.items():
            t = time.perf_counter()
            scores = recipe_score(features(bench.real), features(bench.generated))
            print(fmt(name, evaluate(bench.y, scores), time.perf_counter() - t))


if __name__ == "__main__":
    main()
