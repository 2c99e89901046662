"""The `mae` encoder: global features of a pretrained MAE checkpoint (a local file, never downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from synthaudit.models.device import resolve_device
from synthaudit.models.embed import embed_images
from synthaudit.models.encoders.registry import (
    Encoder,
    EncoderError,
    EncoderWeightsError,
    ProgressFn,
    refuse_options,
    register_encoder,
)


class MAEEncoder:
    """Global features (mean of patch tokens, or the cls token) of a pretrained MAE checkpoint."""

    def __init__(
        self, checkpoint: str | Path, device: str = "auto", pooling: str = "mean", name: str = "mae"
    ):
        from synthaudit.models.pretrain import load_checkpoint  # local: keeps the registry import light

        if pooling not in ("mean", "cls"):
            raise EncoderError(f"mae pooling must be 'mean' or 'cls', not {pooling!r}")
        self.name, self.pooling, self.device = name, pooling, resolve_device(device)
        self.checkpoint = Path(checkpoint)
        self.model, self.metadata = load_checkpoint(self.checkpoint, self.device)
        self.mean = float(self.model.normalisation["mean"])
        self.std = float(self.model.normalisation["std"])

    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        from synthaudit.models.pretrain import to_model_input

        x = to_model_input(batch, self.model.config.img_size, self.mean, self.std)
        if self.pooling == "cls":
            return self.model.forward_features(x)[:, 0]
        return self.model.global_features(x)

    def embed(self, images: np.ndarray, batch_size: int = 64, on_progress: ProgressFn = None) -> np.ndarray:
        """MAE features [N, embed_dim]."""
        return embed_images(self._features, images, batch_size, self.device, on_progress)


@register_encoder("mae")
def _make_mae(
    *,
    name: str,
    weights: str | Path | None = None,
    checkpoint: str | Path | None = None,
    device: str = "auto",
    image_size: int = 64,
    pooling: str = "mean",
    **opts: Any,
) -> Encoder:
    """An MAEEncoder on the checkpoint (or weights) file, which must exist."""
    refuse_options(name, opts)
    checkpoint = checkpoint or weights
    if checkpoint is None:
        raise EncoderWeightsError("mae needs a checkpoint: pretrain first or pass --checkpoint")
    if not Path(checkpoint).is_file():
        raise EncoderWeightsError(f"mae checkpoint not found: {checkpoint}")
    return MAEEncoder(checkpoint, device=device, pooling=pooling, name=name)
