"""A tiny demo set, made here (no download): real images, a "generator" that copied some of them, and a
hold-out drawn like the real ones, so a first audit has something to find.

Every image is a smooth random texture (a few Gaussian blobs and a gradient on 64x64 pixels, seeded).
real/: 40 images, of which the generator was "trained" on the first 20 (`r000`-`r019`); generated/: 20
noisy copies of those (a generator that memorised them) and 40 fresh textures; holdout/: 40 fresh
textures, a reference set drawn like the real images no generator saw.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

SIDE = 64


def texture(rng: np.random.Generator, side: int = SIDE) -> np.ndarray:
    """One smooth random uint8 image [side, side]."""
    yy, xx = np.mgrid[0:side, 0:side] / (side - 1.0)
    img = rng.uniform(-0.3, 0.3) * xx + rng.uniform(-0.3, 0.3) * yy
    for _ in range(int(rng.integers(3, 7))):
        cx, cy, s = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.25)
        img = img + rng.uniform(0.3, 1.0) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * s**2))
    img = img - img.min()
    img = img / max(float(img.max()), 1e-9)
    return (255 * np.clip(img + rng.normal(0, 0.02, img.shape), 0, 1)).astype(np.uint8)


def write_demo(out: str | Path, seed: int = 0) -> dict[str, int]:
    """Write OUT/real, OUT/generated and OUT/holdout (PNG); returns how many images each holds."""
    out = Path(out)
    rng = np.random.default_rng(seed)
    real = [texture(rng) for _ in range(40)]
    folders = {name: out / name for name in ("real", "generated", "holdout")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for i, img in enumerate(real):
        Image.fromarray(img).save(folders["real"] / f"r{i:03d}.png")
    for i, img in enumerate(real[:20]):
        noisy = np.clip(img.astype(np.float64) + rng.normal(0, 4.0, img.shape), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folders["generated"] / f"g{i:03d}.png")
    for i in range(20, 60):
        Image.fromarray(texture(rng)).save(folders["generated"] / f"g{i:03d}.png")
    for i in range(40):
        Image.fromarray(texture(rng)).save(folders["holdout"] / f"h{i:03d}.png")
    return {name: len(list(folder.glob("*.png"))) for name, folder in folders.items()}
