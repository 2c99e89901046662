"""Headless Chromium for report tests: a screenshot of an HTML file and simple pixel checks.

Chromium is installed by `make install` (apt-get, only when missing); the tests never install it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.fail("chromium is not installed: `make install` installs it (apt-get install chromium)")
    return path


def screenshot(html_file: Path, out: Path, width: int = 1200, height: int = 2000) -> np.ndarray:
    """Render html_file in headless Chromium; return the screenshot as an RGB uint8 array."""
    from PIL import Image

    result = subprocess.run(
        [
            chromium(),
            *CHROMIUM_FLAGS,
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            html_file.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert out.exists(), f"chromium wrote no screenshot (rc {result.returncode}):\n{result.stderr[-2000:]}"
    return np.asarray(Image.open(out).convert("RGB"))


def non_white_fraction(rgb: np.ndarray) -> float:
    return float((rgb.min(axis=2) < 240).mean())


def colour_pixels(rgb: np.ndarray, colour: tuple[int, int, int], tol: int = 40) -> int:
    """Pixels within tol (per channel) of a colour: the report's plot colours prove the plots rendered."""
    return int((np.abs(rgb.astype(np.int16) - np.array(colour)).max(axis=2) <= tol).sum())
