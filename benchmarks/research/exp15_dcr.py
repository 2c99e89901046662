"""exp15: would the common set-level "distance to closest record" (DCR) check have caught these generators?

A DCR check compares how close each generated image is to its nearest real image with how close real
images are to each other, and calls a synthetic set safe when generated images are no closer than that.
Here, in the default audit's own feature space (whitened NCC thumbnails, cosine), per folder:

- share of generated images whose nearest-real similarity exceeds the 95 % (99 %) quantile of the real
  images' leave-one-out nearest-neighbour similarities (5 % (1 %) expected without copying);
- the AUC separating those two similarity distributions (0.5 = generated no closer than real to real);
- a control with a generator that cannot have memorised: a random half of the NOT-used real images
  (labels used only to build the control) stands in for the generated set, the other real images are
  the real set.

Compared with the per-image membership AUC of the default audit on the same folder.
Run: .venv/bin/python benchmarks/research/exp15_dcr.py [--bench DIR --folders a,b]
(default: the two ../shared/bench folders; `--bench bench-local --folders fmnist-dcgan-2000,fmnist-dcgan-5000`
for the GAN benchmark of benchmarks/make_gan_bench.py)
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, FOLDERS, roc_auc  # noqa: E402

from models.encoders import PixelsEncoder  # noqa: E402
from models.index import search  # noqa: E402
from models.io import load_images  # noqa: E402
from models.results import read_labels_csv  # noqa: E402
from models.score import apply_whitening, fit_whitening  # noqa: E402


def features(real: np.ndarray, generated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The default's view: 32x32 NCC thumbnails of the 64x64 decoded images, whitened on real + generated."""
    encoder = PixelsEncoder("pixels", side=32, device="cpu")
    r, g = encoder.embed(real), encoder.embed(generated)
    w = fit_whitening(np.concatenate([r, g]))
    return apply_whitening(r, w), apply_whitening(g, w)


def load(folder: str, bench: Path = BENCH) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """real [N, 64, 64], generated, labels (the loader of the audit itself)."""
    root = bench / folder
    real, generated = load_images(root / "real", 64), load_images(root / "generated", 64)
    labels = read_labels_csv(root / "labels.csv")
    return real.images, generated.images, np.array([labels[i] for i in real.ids])


def dcr(real: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    fr, fg = features(real, generated)
    g_sims, _ = search(fg, fr, 1, device="cpu")
    r_sims, _ = search(fr, fr, 1, exclude_self=True, device="cpu")
    g, r = g_sims[:, 0], r_sims[:, 0]
    y = np.r_[np.ones(len(g)), np.zeros(len(r))]
    return {
        "above_q95": float((g > np.quantile(r, 0.95)).mean()),
        "above_q99": float((g > np.quantile(r, 0.99)).mean()),
        "auc": roc_auc(y, np.r_[g, r]),
    }


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", type=Path, default=BENCH)
    ap.add_argument("--folders", default=",".join(FOLDERS))
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print("| folder | generated set | generated | share above real q95 (null 5 %) | above q99 (null 1 %) | DCR AUC (null 0.5) |")
    print("|---|---|---:|---:|---:|---:|")
    for folder in args.folders.split(","):
        real, generated, y = load(folder, args.bench)
        rows = [("the generator's images", real, generated)]
        unused = np.flatnonzero(y == 0)
        stand_in = rng.choice(unused, len(unused) // 2, replace=False)
        rest = np.setdiff1d(np.arange(len(real)), stand_in)
        rows.append(("control: half the not-used real images", real[rest], real[stand_in]))
        for name, r, g in rows:
            m = dcr(r, g)
            print(f"| {folder} | {name} | {len(g)} | {m['above_q95']:.3f} | {m['above_q99']:.3f} | {m['auc']:.3f} |")


if __name__ == "__main__":
    main()
