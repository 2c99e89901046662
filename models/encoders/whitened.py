"""The `pixels_whitened` encoder: NCC pixel thumbnails, PCA-whitened on the audit's own images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from synthaudit.models.encoders.pixels import PixelsEncoder
from synthaudit.models.encoders.registry import EncoderWeightsError, register_encoder
from synthaudit.models.score import Whitening, apply_whitening, fit_whitening

THUMBNAIL_SIDE = 32  # CPU-friendly: the whitening fit costs O(min(N, side^2)^3)


def thumbnail_side(image_size: int) -> int:
    """Side of the pixel thumbnails for a given working image size."""
    return min(THUMBNAIL_SIDE, int(image_size))


def fit_pixel_whitening(
    images: np.ndarray, image_size: int, device: str = "auto", batch_size: int = 256
) -> Whitening:
    """Fit the whitening on NCC thumbnails of the given images (real + generated, never labels)."""
    features = PixelsEncoder("pixels", side=thumbnail_side(image_size), device=device).embed(
        images, batch_size
    )
    return fit_whitening(features)


def save_whitening(whitening: Whitening, path: Path, side: int) -> None:
    """Store a fitted whitening as safetensors (atomic)."""
    from safetensors.numpy import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    tensors = {
        "mean": np.ascontiguousarray(whitening.mean),
        "components": np.ascontiguousarray(whitening.components),
        "scale": np.ascontiguousarray(whitening.scale),
    }
    save_file(
        tensors,
        str(tmp),
        metadata={"side": str(side), "residual_scale": json.dumps(whitening.residual_scale)},
    )
    tmp.replace(path)


def load_whitening(path: Path) -> tuple[Whitening, int]:
    """A whitening stored by save_whitening, and its thumbnail side."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        meta = f.metadata() or {}
        tensors = {name: f.get_tensor(name) for name in ("mean", "components", "scale")}
    whitening = Whitening(
        tensors["mean"], tensors["components"], tensors["scale"], float(json.loads(meta["residual_scale"]))
    )
    return whitening, int(meta["side"])


class WhitenedPixelsEncoder:
    """NCC thumbnails projected through a whitening fitted on the audit's images."""

    def __init__(self, whitening: Whitening, side: int, device: str = "auto", name: str = "pixels_whitened"):
        self.name, self.whitening = name, whitening
        self.pixels = PixelsEncoder("pixels", side=side, device=device)

    def embed(self, images: np.ndarray, batch_size: int = 64, on_progress=None) -> np.ndarray:
        """Whitened, L2-normalised thumbnail features."""
        return apply_whitening(self.pixels.embed(images, batch_size, on_progress), self.whitening)


@register_encoder("pixels_whitened")
def _make_whitened(*, name: str, weights=None, checkpoint=None, device="auto", image_size=64, **opts):
    if checkpoint is None or not Path(checkpoint).exists():
        raise EncoderWeightsError("pixels_whitened needs the whitening fitted in the audit's pretrain stage")
    whitening, side = load_whitening(Path(checkpoint))
    return WhitenedPixelsEncoder(whitening, side, device=device, name=name)
