"""Synthetic image builders for the ML tests (imported by the test modules; not a conftest)."""

from __future__ import annotations

import numpy as np


def blob_images(n: int, size: int = 32, seed: int = 0, blobs: int = 4) -> np.ndarray:
    """n smooth grayscale uint8 images [n, size, size]: sums of random Gaussian blobs plus faint noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    out = np.zeros((n, size, size), np.float32)
    for _ in range(blobs):
        cy, cx = rng.uniform(0, size, (2, n, 1, 1)).astype(np.float32)
        sigma = rng.uniform(size / 12, size / 4, (n, 1, 1)).astype(np.float32)
        amp = rng.uniform(0.2, 1.0, (n, 1, 1)).astype(np.float32)
        out += amp * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * sigma**2))
    out += rng.normal(0, 0.02, out.shape).astype(np.float32)
    out -= out.min(axis=(1, 2), keepdims=True)
    out /= np.maximum(out.max(axis=(1, 2), keepdims=True), 1e-6)
    return (out * 255).astype(np.uint8)
