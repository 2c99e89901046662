"""Fixture builders for the models tests: images, DICOM files and archives written to tmp_path."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def png_bytes(arr: np.ndarray, fmt: str = "PNG", **kwargs: object) -> bytes:
    """Encode an array (uint8 gray / RGB, or uint16 gray) with Pillow."""
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt, **kwargs)
    return buf.getvalue()


def write_image(path: Path, arr: np.ndarray, fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(arr, fmt))
    return path


def dicom_bytes(
    pixels: np.ndarray,
    *,
    slope: float = 1.0,
    intercept: float = 0.0,
    window: tuple[float, float] | None = None,
    photometric: str = "MONOCHROME2",
    preamble: bool = True,
) -> bytes:
    """A minimal uncompressed DICOM file with int16 pixels ([H, W] or [frames, H, W])."""
    from dicom_sets import secondary_capture_dataset

    pixels = np.ascontiguousarray(pixels, dtype=np.int16)
    ds = secondary_capture_dataset()
    ds.PatientName = "Test^Secret"
    ds.Modality = "CT"
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    if pixels.ndim == 3:
        ds.NumberOfFrames = pixels.shape[0]
    ds.Rows, ds.Columns = pixels.shape[-2:]
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 16, 15
    ds.PixelRepresentation = 1
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    if window is not None:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = pixels.tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    return data if preamble else data[132:]


class Build:
    """Helpers handed to tests through the `build` fixture (conftest modules are not importable)."""

    png_bytes = staticmethod(png_bytes)
    write_image = staticmethod(write_image)
    dicom_bytes = staticmethod(dicom_bytes)


@pytest.fixture
def build() -> type[Build]:
    return Build


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)
