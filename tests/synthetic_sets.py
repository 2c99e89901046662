"""Small synthetic membership sets for tests: smooth random images, generated near-copies of the 'used' ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def random_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """A smooth grayscale image: a few random Gaussian blobs, uint8."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    img = np.zeros((size, size))
    for _ in range(int(rng.integers(3, 7))):
        cy, cx = rng.uniform(0, size, 2)
        sigma = rng.uniform(size / 12, size / 4)
        img += rng.uniform(-1, 1) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    img -= img.min()
    return (255 * img / max(img.max(), 1e-9)).astype(np.uint8)


def near_copy(rng: np.random.Generator, img: np.ndarray, noise: float = 6.0) -> np.ndarray:
    """A generator's memorised sample: the image plus a little noise."""
    out = img.astype(np.float64) + rng.normal(0, noise, img.shape)
    return np.clip(out, 0, 255).astype(np.uint8)


def make_membership_set(
    root: Path,
    n_used: int = 10,
    n_unused: int = 10,
    n_fresh_generated: int = 20,
    size: int = 32,
    seed: int = 0,
    exact_copies: bool = False,
) -> dict[str, int]:
    """Write root/real, root/generated and root/labels.csv; return the labels (id -> 1 used / 0 not)."""
    rng = np.random.default_rng(seed)
    (root / "real").mkdir(parents=True, exist_ok=True)
    (root / "generated").mkdir(parents=True, exist_ok=True)
    order = rng.permutation(n_used + n_unused)
    labels: dict[str, int] = {}
    generated: list[np.ndarray] = []
    for rank, i in enumerate(order):
        image_id = f"r{rank + 1:04d}"
        img = random_image(rng, size)
        Image.fromarray(img).save(root / "real" / f"{image_id}.png")
        used = int(i < n_used)
        labels[image_id] = used
        if used:
            generated.append(img.copy() if exact_copies else near_copy(rng, img))
    generated += [random_image(rng, size) for _ in range(n_fresh_generated)]
    for j in rng.permutation(len(generated)):
        Image.fromarray(generated[j]).save(
            root / "generated" / f"g{len(list((root / 'generated').iterdir())) + 1:05d}.png"
        )
    (root / "labels.csv").write_text("id,used\n" + "".join(f"{k},{v}\n" for k, v in sorted(labels.items())))
    return labels
