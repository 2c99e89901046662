"""The reference check's features of an image: how it was acquired, and a little of what it shows.

Intensity percentiles, mean, contrast, dark/bright shares, gradient and Laplacian energy (raw and divided by
contrast), shading (a smooth surface fitted to the foreground's log intensity), the radial power spectrum
in bands, and a per-image-normalised thumbnail (`check_features`); the first ACQUISITION_COLUMNS are the
acquisition statistics (the paired test's). Pure numpy (torch only for area resizing), in chunks.
"""

from __future__ import annotations

import itertools
import math

import numpy as np

THUMB_SIDE = 8  # content thumbnail of the classifier's features
STATS_SIDE = 128  # acquisition statistics on at most 128 x 128 (area-averaged)
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
SPECTRUM_BANDS = 8
SHADING_SIDE = 32  # the smooth-surface fit of _shading runs on 32 x 32 copies
ACQUISITION_COLUMNS = len(QUANTILES) + 13 + SPECTRUM_BANDS  # the features before the content thumbnail
CHUNK = 256
FEATURES = (
    "intensity percentiles, mean, contrast, dark/bright shares, gradient and Laplacian energy, shading "
    "(a smooth surface fitted to the foreground's log intensity), "
    f"radial power spectrum ({SPECTRUM_BANDS} bands), per-image-normalised {THUMB_SIDE}x{THUMB_SIDE} thumbnail"
)


def _area_resize(x: np.ndarray, side: int) -> np.ndarray:
    """[B, H, W] float -> [B, side, side] by area averaging (bilinear when not an integer ratio)."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(x).unsqueeze(1)
    if t.shape[-1] == side and t.shape[-2] == side:
        return x
    return F.adaptive_avg_pool2d(t, side).squeeze(1).numpy()


def _spectrum_bands(x: np.ndarray) -> np.ndarray:
    """Share of the (mean-removed) power in log-spaced radial frequency bands, as logs: [B, bands]."""
    b, h, w = x.shape
    power = np.abs(np.fft.rfft2(x - x.mean(axis=(1, 2), keepdims=True))) ** 2
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    radius = np.sqrt(fy**2 + fx**2) / 0.5  # 1 = Nyquist along an axis
    edges = np.geomspace(1.0 / min(h, w), math.sqrt(2.0), SPECTRUM_BANDS + 1)
    edges[0] = 1e-9
    total = power.reshape(b, -1).sum(axis=1) + 1e-12
    bands = []
    for lo, hi in itertools.pairwise(edges):
        mask = (radius > lo) & (radius <= hi)
        bands.append(power[:, mask].sum(axis=1) / total)
    return np.log(np.stack(bands, axis=1) + 1e-9)


def _normalised_thumbnails(x: np.ndarray, side: int) -> np.ndarray:
    """Per-image zero-mean, unit-norm thumbnails: [B, side*side]."""
    t = _area_resize(x, side).reshape(x.shape[0], -1)
    t = t - t.mean(axis=1, keepdims=True)
    return t / (np.linalg.norm(t, axis=1, keepdims=True) + 1e-8)


def _shading(x: np.ndarray, side: int = SHADING_SIDE) -> np.ndarray:
    """How much of each image's log intensity over its foreground a smooth 2nd-order surface explains
    (a bias field, uneven illumination), and what it leaves: [B, 3] = log trend variance, log residual
    variance, foreground coefficient of variation. Foreground: above a tenth of the image's maximum."""
    t = _area_resize(x, min(side, x.shape[1], x.shape[2]))
    b, h, w = t.shape
    yy, xx = np.mgrid[0:h, 0:w]
    u, v = (xx.ravel() / max(w - 1, 1) - 0.5), (yy.ravel() / max(h - 1, 1) - 0.5)
    basis = np.stack([np.ones_like(u), u, v, u * v, u**2, v**2], axis=1)  # [P, 6]
    flat = t.reshape(b, -1).astype(np.float64)
    mask = flat > 0.1 * flat.max(axis=1, keepdims=True)
    mask[mask.sum(axis=1) < basis.shape[1] * 4] = True  # too little foreground: the whole image
    wts = mask / mask.sum(axis=1, keepdims=True)
    logi = np.log(flat + 0.02)
    gram = np.einsum("bp,pi,pj->bij", wts, basis, basis) + 1e-6 * np.eye(basis.shape[1])
    rhs = np.einsum("bp,pi,bp->bi", wts, basis, logi)
    fit = np.linalg.solve(gram, rhs[..., None])[..., 0] @ basis.T  # [B, P]
    mean = (wts * logi).sum(axis=1, keepdims=True)
    trend = (wts * (fit - mean) ** 2).sum(axis=1)
    resid = (wts * (logi - fit) ** 2).sum(axis=1)
    fg_mean = (wts * flat).sum(axis=1)
    fg_cv = np.sqrt((wts * (flat - fg_mean[:, None]) ** 2).sum(axis=1)) / (fg_mean + 1e-6)
    return np.c_[np.log(trend + 1e-6), np.log(resid + 1e-6), fg_cv]


def _chunk_features(x: np.ndarray) -> np.ndarray:
    side = min(STATS_SIDE, x.shape[1], x.shape[2])
    s = _area_resize(x, side) if x.shape[1:] != (side, side) else x
    flat = s.reshape(s.shape[0], -1)
    quant = np.quantile(flat, QUANTILES, axis=1).T
    mean = flat.mean(axis=1, keepdims=True)
    std = flat.std(axis=1, keepdims=True)
    dark = (flat < 2.0 / 255.0).mean(axis=1, keepdims=True)
    bright = (flat > 253.0 / 255.0).mean(axis=1, keepdims=True)
    dx = np.abs(np.diff(s, axis=2)).mean(axis=(1, 2))[:, None]
    dy = np.abs(np.diff(s, axis=1)).mean(axis=(1, 2))[:, None]
    lap = np.abs(4 * s[:, 1:-1, 1:-1] - s[:, :-2, 1:-1] - s[:, 2:, 1:-1] - s[:, 1:-1, :-2] - s[:, 1:-1, 2:])
    lap_energy = lap.mean(axis=(1, 2))[:, None]
    eps = 1e-4
    sharp = np.log(eps + np.c_[dx, dy, lap_energy]) - np.log(eps + std)  # contrast-free sharpness
    stats = np.c_[quant, mean, std, dark, bright, np.log(eps + np.c_[dx, dy, lap_energy]), sharp]
    return np.c_[stats, _shading(s), _spectrum_bands(s), _normalised_thumbnails(s, THUMB_SIDE)].astype(
        np.float64
    )


def check_features(images: np.ndarray) -> np.ndarray:
    """The check's features of uint8 images [N, H, W]: acquisition statistics and a content thumbnail."""
    imgs = np.asarray(images)
    if imgs.ndim != 3 or imgs.shape[0] == 0:
        raise ValueError("check_features needs a non-empty stack of 2-D images")
    parts = [
        _chunk_features(imgs[i : i + CHUNK].astype(np.float32) / 255.0) for i in range(0, len(imgs), CHUNK)
    ]
    return np.concatenate(parts)
