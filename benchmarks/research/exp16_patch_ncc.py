"""exp16: does per-patch normalisation of the pixels (no MAE) give what exp13's whitened MAE patch tokens gave?

exp13 found that whitened MAE patch tokens through the default's recipe scored 0.972 / 0.840 AUC
(dev / hard) against the default's 0.974 / 0.819, and that an untrained MAE did as well: the gain seemed
to come from normalising each patch, then whitening. Pre-declared variants, all through the default's
recipe (whitening fitted on real + generated, then density_attribution_score with K = default_k(N)):

  default      32x32 NCC thumbnails (the shipped `pixels_whitened` view), whole-image normalisation
  p4@32        32x32 thumbnails cut into 4x4 patches, each mean-centred and L2-normalised (1024-d)
  p8@32        32x32 thumbnails, 8x8 patches (1024-d)
  p8@64        the 64x64 images, 8x8 patches (4096-d, as the MAE's patch grid)

Labels are used only to score. One run, no tuning beyond these four rows.
Run: .venv/bin/python benchmarks/research/exp16_patch_ncc.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, FOLDERS, evaluate, fmt  # noqa: E402

from models import score as sc  # noqa: E402
from models.index import search  # noqa: E402
from models.io import load_images  # noqa: E402
from models.results import read_labels_csv  # noqa: E402


def thumbs(images: np.ndarray, side: int) -> np.ndarray:
    x = torch.from_numpy(images).float()[:, None] / 255
    if images.shape[-1] > side:
        x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
    return x[:, 0].numpy()


def patch_ncc(images: np.ndarray, patch: int) -> np.ndarray:
    """[N, S, S] -> [N, S*S]: every patch x patch block mean-centred and L2-normalised, then the whole
    vector L2-normalised (so each patch weighs the same)."""
    n, s, _ = images.shape
    g = s // patch
    x = images[:, : g * patch, : g * patch].reshape(n, g, patch, g, patch).transpose(0, 1, 3, 2, 4)
    x = x.reshape(n, g * g, patch * patch).astype(np.float32)
    x = x - x.mean(axis=2, keepdims=True)
    x = x / np.maximum(np.linalg.norm(x, axis=2, keepdims=True), 1e-6)
    x = x.reshape(n, -1)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


VARIANTS = {
    "default (whole-image NCC @32)": lambda im: sc.ncc_vectors(thumbs(im, 32)),
    "p4@32": lambda im: patch_ncc(thumbs(im, 32), 4),
    "p8@32": lambda im: patch_ncc(thumbs(im, 32), 8),
    "p8@64": lambda im: patch_ncc(im.astype(np.float32) / 255, 8),
}


def main() -> None:
    for folder in FOLDERS:
        rs, gs = load_images(BENCH / folder / "real", 64), load_images(BENCH / folder / "generated", 64)
        labels = read_labels_csv(BENCH / folder / "labels.csv")
        y = np.array([labels[i] for i in rs.ids])
        k = sc.default_k(len(rs.images))
        print(f"== {folder}")
        for name, features in VARIANTS.items():
            t = time.perf_counter()
            fr, fg = features(rs.images), features(gs.images)
            w = sc.fit_whitening(np.concatenate([fr, fg]))
            wr, wg = sc.apply_whitening(fr, w), sc.apply_whitening(fg, w)
            rg, _ = search(wr, wg, k, device="cpu")
            rr, _ = search(wr, wr, k, device="cpu", exclude_self=True)
            gr, igr = search(wg, wr, 2, device="cpu")
            scores = sc.density_attribution_score(rg, rr, gr, igr, k)
            print(fmt(name, evaluate(y, scores), time.perf_counter() - t))


if __name__ == "__main__":
    main()
