"""The encoder registry: the Encoder protocol, its errors, register / look up / create by name.

Encoder families (pixels, mae, timm_backbones, whitened, vit_tokens) import this module and register
their factories; this module imports none of them (models.encoders imports them all).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

ProgressFn = Callable[[float], None] | None


class EncoderError(ValueError):
    """An encoder cannot be created as asked (unknown name, bad option)."""


class EncoderWeightsError(EncoderError):
    """An encoder's weights or checkpoint are missing or do not fit the model."""


@runtime_checkable
class Encoder(Protocol):
    """Anything with a name that embeds uint8 images [N, S, S] into float32 [N, D], L2-normalised."""

    name: str

    def embed(self, images: np.ndarray, batch_size: int = 64, on_progress: ProgressFn = None) -> np.ndarray:
        """Features of images, one L2-normalised row per image."""
        ...


EncoderFactory = Callable[..., Encoder]
_REGISTRY: dict[str, EncoderFactory] = {}


def register_encoder(name: str) -> Callable[[EncoderFactory], EncoderFactory]:
    """Decorator registering an encoder factory (called with the create_encoder keywords)."""

    def decorate(factory: EncoderFactory) -> EncoderFactory:
        if name in _REGISTRY:
            raise EncoderError(f"encoder {name!r} is already registered")
        _REGISTRY[name] = factory
        return factory

    return decorate


def available_encoders() -> list[str]:
    """Registered encoder names, sorted."""
    return sorted(_REGISTRY)


def encoder_factory(name: str) -> EncoderFactory:
    """The factory registered under name; EncoderError naming the available ones otherwise."""
    if name not in _REGISTRY:
        raise EncoderError(f"unknown encoder {name!r}; available: {', '.join(available_encoders())}")
    return _REGISTRY[name]


def create_encoder(
    name: str,
    *,
    weights: str | Path | None = None,
    checkpoint: str | Path | None = None,
    device: str = "auto",
    image_size: int = 64,
    **options: Any,
) -> Encoder:
    """Build the encoder registered under name (see available_encoders())."""
    return encoder_factory(name)(
        name=name, weights=weights, checkpoint=checkpoint, device=device, image_size=image_size, **options
    )


def refuse_options(name: str, options: dict[str, Any]) -> None:
    """EncoderError when a factory receives options it does not take."""
    if options:
        raise EncoderError(f"encoder {name!r} does not take option(s): {', '.join(sorted(options))}")
