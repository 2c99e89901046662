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


def textured_image(rng: np.random.Generator, size: int, base: np.ndarray | None = None) -> np.ndarray:
    """Fine texture (noise smoothed over ~1.3 px) over a shared `base` image (or random blobs): a copy
    misaligned by a pixel or two is no closer to its source than to any other image."""
    sigma = 0.6
    t = np.arange(-3 * int(np.ceil(sigma)), 3 * int(np.ceil(sigma)) + 1)
    kernel = np.exp(-(t**2) / (2 * sigma**2))
    kernel /= kernel.sum()
    texture = rng.normal(0, 1, (size + 2 * len(t), size + 2 * len(t)))
    texture = np.apply_along_axis(np.convolve, 0, texture, kernel, mode="same")
    texture = np.apply_along_axis(np.convolve, 1, texture, kernel, mode="same")[
        len(t) : -len(t), len(t) : -len(t)
    ]
    blobs = random_image(rng, size) if base is None else base
    img = blobs.astype(np.float64) / 255 + 0.1 * texture / max(texture.std(), 1e-9)
    img -= img.min()
    return (255 * img / max(img.max(), 1e-9)).astype(np.uint8)


# (dx, dy, angle_deg, zoom) of the misaligned copies, shifts in pixels of a 16-px image (one thumbnail pixel
# at image_size 16); the angle and the zoom a little off the search's own grid (+-5 degrees, +-5 %)
MISALIGNMENTS = ((1.0, 0.0, 0.0, 1.0), (0.0, -1.0, 0.0, 1.0), (0.0, 0.0, 4.5, 1.0), (0.0, 0.0, 0.0, 1.045))
FAR_MISALIGNMENTS = (
    (2.0, 0.0, 0.0, 1.0),
    (-2.0, 2.0, 0.0, 1.0),
    (0.0, 0.0, -9.5, 1.0),
    (0.0, 0.0, 0.0, 0.905),
)


def make_misaligned_set(
    root: Path,
    n_used: int = 100,
    n_unused: int = 100,
    n_fresh_generated: int = 100,
    size: int = 16,
    seed: int = 0,
    copies: str = "misaligned",
) -> dict[str, int]:
    """Textured real images; generated = one copy of each used image, shifted, rotated or scaled a little
    (`copies="misaligned"`, cycling through MISALIGNMENTS), twice as much (`"far"`, FAR_MISALIGNMENTS: what
    only the probe sees), exact (`"exact"`) or none at all (`"none"`: every
    generated image is novel), plus fresh images. Writes root/real, root/generated, root/labels.csv."""
    from synthaudit.models.alignment import warp

    rng = np.random.default_rng(seed)
    (root / "real").mkdir(parents=True, exist_ok=True)
    (root / "generated").mkdir(parents=True, exist_ok=True)
    labels: dict[str, int] = {}
    generated: list[np.ndarray] = []
    order = rng.permutation(n_used + n_unused)
    base = random_image(rng, size)
    for rank, i in enumerate(order):
        image_id = f"r{rank + 1:04d}"
        img = textured_image(rng, size, base)
        Image.fromarray(img).save(root / "real" / f"{image_id}.png")
        used = int(i < n_used) if copies != "none" else 0
        labels[image_id] = used
        if used:
            moves = FAR_MISALIGNMENTS if copies == "far" else MISALIGNMENTS
            copy = img if copies == "exact" else warp(img[None], *moves[rank % len(moves)])[0]
            generated.append(copy)
    generated += [textured_image(rng, size, base) for _ in range(n_fresh_generated)]
    for n, j in enumerate(rng.permutation(len(generated))):
        Image.fromarray(generated[j]).save(root / "generated" / f"g{n + 1:05d}.png")
    (root / "labels.csv").write_text("id,used\n" + "".join(f"{k},{v}\n" for k, v in sorted(labels.items())))
    return labels


def slice_stack(rng: np.random.Generator, slices: int = 60, side: int = 32) -> np.ndarray:
    """The slices of one smooth random volume [slices, side, side] in [0, 1]: neighbouring slices are
    near-duplicates, as in a CT or MRI series."""
    zz, yy, xx = np.mgrid[0:slices, 0:side, 0:side].astype(float)
    vol = np.zeros((slices, side, side))
    for _ in range(12):
        c = rng.uniform([0, 4, 4], [slices, side - 4, side - 4])
        s = rng.uniform([8, 3, 3], [20, side / 4, side / 4])
        r2 = ((zz - c[0]) / s[0]) ** 2 + ((yy - c[1]) / s[1]) ** 2 + ((xx - c[2]) / s[2]) ** 2
        vol += rng.uniform(0.3, 1.0) * np.exp(-r2 / 2)
    return vol / vol.max() * rng.uniform(0.6, 1.0)
