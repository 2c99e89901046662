"""Measure the near-duplicate threshold of models/reference_overlap.py (docs/design.md, record 11).

For each image of two kinds (Fashion-MNIST test images, Debian `dataset-fashion-mnist`; T1 MRI slices of
three volumes, Debian `mricron-data`, cut as benchmarks/make_ct_bench.py cuts them), at the audit's image
sizes 64 and 256: the cosine of its normalised 16x16 thumbnail with

- its nearest *distinct* image of the same kind (other pixels; for MRI this is a neighbouring slice 1 mm
  away, the closest two different images a real set holds), and
- copies of it: PNG re-encoded, JPEG at quality 90 / 75 / 50, Gaussian noise of sigma 2 / 5 / 8 grey
  levels, each made at the source resolution and then decoded at the audit's size.

The threshold must lie above the first and below the second. Run from the repo root:
  .venv/bin/python benchmarks/reference_overlap_threshold.py
"""

from __future__ import annotations

import gzip
import io
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthaudit.models.reference_overlap import (
    NEAR_DUPLICATE_COSINE,
    SPACING_RATIO,
    nearest_cosine,
    pixel_digests,
    stands_out,
    thumbnails,
)

FMNIST = Path("/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz")
MRICRON = Path("/usr/share/mricron/templates")
VOLUMES = ("ch2bet.nii.gz", "inia19-t1-brain.nii.gz", "ch2better.nii.gz")
COPIES = 1000  # images of each kind that get copies


def fmnist() -> list[np.ndarray]:
    with gzip.open(FMNIST) as fh:
        raw = fh.read()
    return list(np.frombuffer(raw, np.uint8, offset=16).reshape(-1, 28, 28))


def mri() -> list[np.ndarray]:
    from make_ct_bench import read_nifti, series_slices, to_uint8

    out: list[np.ndarray] = []
    for name in VOLUMES:
        vol, pixdim = read_nifti(MRICRON / name)
        vol8 = to_uint8(vol)
        for axis in range(3):
            out += series_slices(vol8, pixdim, axis, 256)[0]
    return out


def fit(img: np.ndarray, size: int) -> np.ndarray:
    """The decode stage's resize (models/io.py: Pillow bilinear)."""
    if img.shape == (size, size):
        return img
    return np.asarray(Image.fromarray(img).resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)


def jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


def noisy(img: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    return np.clip(img + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)


def nearest_distinct(thumbs: np.ndarray, digests: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """Each image's highest and second-highest cosine with images of other pixels (blocks of 1,024 rows)."""
    codes = np.unique(np.array(digests), return_inverse=True)[1]
    best = np.full(len(thumbs), -1.0, dtype=np.float32)
    second = np.full(len(thumbs), -1.0, dtype=np.float32)
    for start in range(0, len(thumbs), 1024):
        sims = thumbs[start : start + 1024] @ thumbs.T
        same = codes[start : start + 1024, None] == codes[None, :]
        sims[same] = -1.0
        top2 = -np.sort(-np.partition(sims, -2, axis=1)[:, -2:], axis=1)
        best[start : start + 1024], second[start : start + 1024] = top2[:, 0], top2[:, 1]
    return best, second


def measure(kind: str, sources: list[np.ndarray], size: int) -> None:
    rng = np.random.default_rng(0)
    images = np.stack([fit(s, size) for s in sources])
    thumbs = thumbnails(images)
    digests = pixel_digests(images)
    exact = len(digests) - len(set(digests))
    distinct, second = nearest_distinct(thumbs, digests)
    qs = np.quantile(distinct, [0.5, 0.99, 0.999])
    print(
        f"{kind} @ {size}: {len(images)} images ({exact} exact repeats left out); nearest distinct cosine: "
        f"median {qs[0]:.4f}, 99% {qs[1]:.4f}, 99.9% {qs[2]:.4f}, max {distinct.max():.5f}; "
        + ", ".join(f">= {t}: {int((distinct >= t).sum())}" for t in (0.998, 0.999, NEAR_DUPLICATE_COSINE))
        + f"; of those >= {NEAR_DUPLICATE_COSINE}, standing out from their next neighbour (ratio "
        f"{SPACING_RATIO}): {int(((distinct >= NEAR_DUPLICATE_COSINE) & stands_out(distinct, second)).sum())}"
    )
    pick = rng.choice(len(sources), min(COPIES, len(sources)), replace=False)
    variants = {
        "png": lambda s: s,
        "jpeg90": lambda s: jpeg(s, 90),
        "jpeg75": lambda s: jpeg(s, 75),
        "jpeg50": lambda s: jpeg(s, 50),
        "noise2": lambda s: noisy(s, 2.0, rng),
        "noise5": lambda s: noisy(s, 5.0, rng),
        "noise8": lambda s: noisy(s, 8.0, rng),
    }
    parts = []
    for name, make in variants.items():
        copies = thumbnails(np.stack([fit(make(sources[i]), size) for i in pick]))
        cos = (copies * thumbs[pick]).sum(axis=1)
        others = copies @ thumbs.T
        others[np.arange(len(pick)), pick] = -1.0  # the copy's nearest image other than its original
        caught_rule = (cos >= NEAR_DUPLICATE_COSINE) & stands_out(cos, others.max(axis=1))
        parts.append(
            f"{name} min {cos.min():.5f} (1% {np.quantile(cos, 0.01):.5f}, caught "
            f"{np.mean(cos >= NEAR_DUPLICATE_COSINE):.1%}, with the spacing rule {np.mean(caught_rule):.1%})"
        )
    print(f"  copies vs their originals: {'; '.join(parts)}")
    caught = (
        nearest_cosine(thumbnails(np.stack([fit(jpeg(sources[i], 75), size) for i in pick])), thumbs)
        >= NEAR_DUPLICATE_COSINE
    )
    print(
        f"  at the threshold {NEAR_DUPLICATE_COSINE}: JPEG-75 copies found by the search {caught.mean():.3f}"
    )


def main() -> None:
    kinds = {"fashion-mnist": fmnist(), "mri-slices": mri()}
    for size in (64, 256):
        for kind, sources in kinds.items():
            measure(kind, sources, size)


if __name__ == "__main__":
    main()
