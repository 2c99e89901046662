"""ImageNet CNN encoders from timm, loading weights from a local file the user names (never downloaded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from synthaudit.models.device import resolve_device
from synthaudit.models.embed import embed_images
from synthaudit.models.encoders.registry import (
    Encoder,
    EncoderFactory,
    EncoderWeightsError,
    ProgressFn,
    refuse_options,
    register_encoder,
)

MIN_MATCHED_FRACTION = 0.9
TIMM_BACKBONES = (
    "vgg16",
    "inception_v3",
    "resnet50",
    "resnet101",
    "mobilenetv2_100",
    "mobilenetv3_large_100",
    "efficientnet_b0",
    "tf_efficientnet_lite0",
)


def read_weight_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a local .safetensors / .pth / .pt / .bin file (no pickle: weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise EncoderWeightsError(f"weights file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".safetensors":
            from safetensors.torch import load_file

            state: Any = load_file(str(path), device="cpu")
        elif suffix in (".pth", ".pt", ".bin"):
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        else:
            raise EncoderWeightsError(f"{path}: unsupported weights format (use .safetensors, .pth or .pt)")
    except EncoderWeightsError:
        raise
    except Exception as exc:  # corrupt file, pickle refused by weights_only, ...
        raise EncoderWeightsError(f"cannot read weights from {path}: {exc}") from exc
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise EncoderWeightsError(f"{path}: expected a dict of tensors, found {type(state).__name__}")
    return {_strip_prefix(k): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _strip_prefix(key: str) -> str:
    for prefix in ("module.", "model."):
        if key.startswith(prefix):
            return key[len(prefix) :]
    return key


def _is_counter(key: str) -> bool:
    return key.endswith("num_batches_tracked")


def match_by_name(
    target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Source tensors whose name and shape equal a target tensor's."""
    return {
        k: v
        for k, v in source.items()
        if k in target and not _is_counter(k) and tuple(v.shape) == tuple(target[k].shape)
    }


def match_by_order(
    target: dict[str, torch.Tensor], source: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Pair target and source tensors in stored order while shapes agree (for renamed layouts)."""
    tgt = [(k, v) for k, v in target.items() if not _is_counter(k)]
    src = [v for k, v in source.items() if not _is_counter(k)]
    mapped: dict[str, torch.Tensor] = {}
    for (key, t), s in zip(tgt, src):
        if tuple(t.shape) != tuple(s.shape):
            break
        mapped[key] = s
    return mapped


def load_backbone_weights(model: nn.Module, path: str | Path, name: str) -> float:
    """Load a local weights file into model (by name, else by order); returns the matched fraction."""
    target = model.state_dict()
    source = read_weight_file(path)
    wanted = sum(1 for k in target if not _is_counter(k))
    mapped = match_by_name(target, source)
    if len(mapped) < MIN_MATCHED_FRACTION * wanted:
        by_order = match_by_order(target, source)
        if len(by_order) > len(mapped):
            mapped = by_order
    fraction = len(mapped) / max(1, wanted)
    if fraction < MIN_MATCHED_FRACTION:
        raise EncoderWeightsError(
            f"{path} does not fit {name}: only {len(mapped)} of {wanted} tensors matched "
            f"({fraction:.0%} < {MIN_MATCHED_FRACTION:.0%}); is it the right architecture?"
        )
    model.load_state_dict({k: v.to(target[k].dtype) for k, v in mapped.items()}, strict=False)
    return fraction


class TimmEncoder:
    """An ImageNet CNN from timm (no classifier): grey repeated to RGB, resized, ImageNet-normalised."""

    def __init__(self, name: str, weights: str | Path, device: str = "auto"):
        import timm
        from timm.data import resolve_data_config

        self.name, self.device = name, resolve_device(device)
        self.model = timm.create_model(name, pretrained=False, num_classes=0)
        self.matched_fraction = load_backbone_weights(self.model, weights, name)
        self.model.to(self.device).eval()
        self.channels_last = self.device.type == "cuda"  # NHWC convolutions are faster on tensor cores
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        cfg = resolve_data_config({}, model=self.model)
        self.input_size = tuple(cfg["input_size"][1:])  # (H, W)
        self.mean = torch.tensor(cfg["mean"], device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], device=self.device).view(1, 3, 1, 1)

    def _features(self, batch: torch.Tensor) -> torch.Tensor:
        x = batch.float().unsqueeze(1) / 255.0  # [B, 1, S, S]
        x = F.interpolate(x, size=self.input_size, mode="bilinear", align_corners=False, antialias=True)
        x = (x.expand(-1, 3, -1, -1) - self.mean) / self.std  # [B, 3, H, W]
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.model(x)  # pooled features [B, D]

    def embed(self, images: np.ndarray, batch_size: int = 64, on_progress: ProgressFn = None) -> np.ndarray:
        """Pooled backbone features [N, num_features]."""
        return embed_images(self._features, images, batch_size, self.device, on_progress)


def _timm_factory(backbone: str) -> EncoderFactory:
    """The registry factory of one timm backbone (weights are required)."""

    def make(
        *,
        name: str,
        weights: str | Path | None = None,
        checkpoint: str | Path | None = None,
        device: str = "auto",
        image_size: int = 64,
        **opts: Any,
    ) -> Encoder:
        refuse_options(name, opts)
        if weights is None:
            raise EncoderWeightsError(f"{name} needs ImageNet weights from a local file: pass --weights PATH")
        return TimmEncoder(backbone, weights, device=device)

    return make


for _backbone in TIMM_BACKBONES:
    register_encoder(_backbone)(_timm_factory(_backbone))
