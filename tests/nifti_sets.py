"""Synthetic NIfTI volumes written with nibabel by the tests (no downloads): CT-like (Hounsfield units)
and MRI-like, in RAS or in LPS storage, and sets of them for audits."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

LPS = np.diag([-1.0, -1.0, 1.0, 1.0])


def _phantom(rng: np.random.Generator, shape: tuple[int, int, int], empty_slices: int) -> np.ndarray:
    """A float ellipsoid of random blobs in [0, 1], zero outside, with `empty_slices` empty z planes at
    each end."""
    x, y, z = (np.linspace(-1, 1, n) for n in shape)
    gx, gy, gz = np.meshgrid(x, y, z, indexing="ij")
    inside = gx**2 / 0.8 + gy**2 / 0.6 + gz**2 < 0.9
    texture = rng.random(shape)
    for axis in range(3):
        texture = (texture + np.roll(texture, 1, axis) + np.roll(texture, -1, axis)) / 3
    out = np.where(inside, 0.3 + 0.7 * texture, 0.0)
    if empty_slices:
        out[:, :, :empty_slices] = 0
        out[:, :, -empty_slices:] = 0
    return out


def ct_volume(seed: int, shape: tuple[int, int, int] = (24, 20, 16), empty_slices: int = 2) -> np.ndarray:
    """int16 HU: air -1000 around a body of soft tissue (-100 .. 300 HU)."""
    body = _phantom(np.random.default_rng(seed), shape, empty_slices)
    return np.where(body > 0, -100 + 400 * body, -1000).astype(np.int16)


def mri_volume(seed: int, shape: tuple[int, int, int] = (24, 20, 16), empty_slices: int = 2) -> np.ndarray:
    """float32 arbitrary units 0 .. ~1200 (no negative values)."""
    body = _phantom(np.random.default_rng(seed), shape, empty_slices)
    return (1200 * body).astype(np.float32)


def nifti_bytes(
    volume: np.ndarray, affine: np.ndarray | None = None, gz: bool = True, **header: object
) -> bytes:
    """The volume as a single-file NIfTI-1 (.nii, or .nii.gz when gz), header fields set as given."""
    import nibabel as nib

    image = nib.Nifti1Image(volume, np.eye(4) if affine is None else affine)
    for key, value in header.items():
        image.header[key] = value
    data = image.to_bytes()
    return gzip.compress(data, mtime=0) if gz else data


def lps_twin(volume: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The same anatomy stored in LPS: x and y reversed, with the affine that says so."""
    affine = LPS.copy()
    affine[0, 3] = volume.shape[0] - 1
    affine[1, 3] = volume.shape[1] - 1
    return np.ascontiguousarray(volume[::-1, ::-1, :]), affine


def write_volume_set(
    root: Path, n_real: int = 6, n_copies: int = 3, n_fresh: int = 3, kind: str = "ct"
) -> set[str]:
    """real/ and generated/ folders of .nii.gz volumes; generated g0.. are copies of real r0.. (the
    first n_copies), the rest fresh. Returns the names of the real volumes copied."""
    make = ct_volume if kind == "ct" else mri_volume
    (root / "real").mkdir(parents=True, exist_ok=True)
    (root / "generated").mkdir(parents=True, exist_ok=True)
    for i in range(n_real):
        (root / "real" / f"r{i}.nii.gz").write_bytes(nifti_bytes(make(100 + i)))
    for i in range(n_copies):
        (root / "generated" / f"g{i}.nii.gz").write_bytes(nifti_bytes(make(100 + i)))
    for i in range(n_fresh):
        (root / "generated" / f"g{n_copies + i}.nii.gz").write_bytes(nifti_bytes(make(500 + i)))
    return {f"r{i}" for i in range(n_copies)}
