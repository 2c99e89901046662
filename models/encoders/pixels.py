"""The `pixels` encoder: raw pixels, downsized, mean-centred per image, L2-normalised."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from synthaudit.models.device import resolve_device
from synthaudit.models.embed import embed_images
from synthaudit.models.encoders.registry import (
    Encoder,
    EncoderError,
    ProgressFn,
    refuse_options,
    register_encoder,
)


class PixelsEncoder:
    """Raw pixels, downsized to `side`, mean-centred per image, flattened, L2-normalised."""

    def __init__(self, name: str = "pixels", side: int = 32, device: str = "auto"):
        if side < 1:
            raise EncoderError("pixels side must be >= 1")
        self.name, self.side, self.device = name, int(side), resolve_device(device)

    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.float().unsqueeze(1) / 255.0  # [B, 1, S, S]
        if x.shape[-1] > self.side or x.shape[-2] > self.side:
            x = F.interpolate(x, size=(self.side, self.side), mode="bilinear", antialias=True)
        x = x.flatten(1)  # [B, side*side]
        return x - x.mean(dim=1, keepdim=True)

    def embed(self, images: np.ndarray, batch_size: int = 64, on_progress: ProgressFn = None) -> np.ndarray:
        """Pixel features [N, min(S, side)^2]."""
        return embed_images(self._features, images, max(batch_size, 256), self.device, on_progress)


@register_encoder("pixels")
def _make_pixels(
    *,
    name: str,
    weights: str | Path | None = None,
    checkpoint: str | Path | None = None,
    device: str = "auto",
    image_size: int = 64,
    side: int = 32,
    **opts: Any,
) -> Encoder:
    """A PixelsEncoder no larger than the working image size."""
    refuse_options(name, opts)
    return PixelsEncoder(name, side=min(int(side), int(image_size)), device=device)
