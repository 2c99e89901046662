"""Image encoders behind one registry: raw pixels, the self-supervised MAE, timm backbones, whitened variants.

Every encoder maps uint8 images [N, S, S] to L2-normalised float32 features [N, D]. Nothing here
downloads weights: timm backbones load a local file the user names, the MAE a local checkpoint.
Importing this package imports every family so that each registers itself (see registry.py);
families import only models.encoders.registry (and pixels), never this package's names.
"""

from __future__ import annotations

from synthaudit.models.encoders import mae, pixels, timm_backbones, vit_tokens, whitened  # noqa: F401  (they register)
from synthaudit.models.encoders.mae import MAEEncoder
from synthaudit.models.encoders.pixels import PixelsEncoder
from synthaudit.models.encoders.registry import (
    Encoder,
    EncoderError,
    EncoderFactory,
    EncoderWeightsError,
    ProgressFn,
    available_encoders,
    create_encoder,
    encoder_factory,
    register_encoder,
)
from synthaudit.models.encoders.timm_backbones import (
    MIN_MATCHED_FRACTION,
    TIMM_BACKBONES,
    TimmEncoder,
    load_backbone_weights,
    match_by_name,
    match_by_order,
    read_weight_file,
)

__all__ = [
    "MIN_MATCHED_FRACTION",
    "TIMM_BACKBONES",
    "Encoder",
    "EncoderError",
    "EncoderFactory",
    "EncoderWeightsError",
    "MAEEncoder",
    "PixelsEncoder",
    "ProgressFn",
    "TimmEncoder",
    "available_encoders",
    "create_encoder",
    "encoder_factory",
    "load_backbone_weights",
    "match_by_name",
    "match_by_order",
    "read_weight_file",
    "register_encoder",
]
