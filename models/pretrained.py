"""Reusable encoders: pretrain an MAE on image sources once, save it with its provenance, reuse it.

`pretrain_encoder` decodes each source exactly as an audit's decode stage does (`load_images` at
`image_size`), concatenates them in the given order and trains with the settings `run_pretrain` uses,
so an encoder pretrained on [real, generated] with an audit's seed and budget is the encoder that
audit would have pretrained itself (bit for bit on CPU), and an audit that reuses it gives the same CSV.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthaudit.models.config import AuditConfig

ProgressFn = Callable[[float], None]
DECODE_SHARE = 0.1  # of the progress bar


@dataclass(frozen=True)
class EncoderSpec:
    """What decides an encoder's weights (besides its training images)."""

    image_size: int = AuditConfig.image_size
    mae_preset: str = AuditConfig.mae_preset
    pretrain_images_seen: int | None = None
    seed: int = 0
    device: str = "auto"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class EncoderInfo:
    """Provenance of a pretrained encoder file."""

    path: Path
    data_hash: str
    n_images: int
    final_loss: float | None
    steps: int
    spec: EncoderSpec


def images_hash(images: np.ndarray) -> str:
    """sha256 over the shape and the bytes of a uint8 image stack: the training data's fingerprint."""
    arr = np.ascontiguousarray(images, dtype=np.uint8)
    digest = hashlib.sha256(repr(tuple(arr.shape)).encode())
    digest.update(arr.data.cast("B"))
    return digest.hexdigest()


def load_training_images(
    sources: Sequence[str | Path], image_size: int, on_progress: ProgressFn | None = None
) -> np.ndarray:
    """Decode every source (folder or archive) and stack them in order: uint8 [N, S, S]."""
    from synthaudit.models.io import load_images

    if not sources:
        raise ValueError("pretraining needs at least one image source")
    parts = []
    for i, source in enumerate(sources):
        step = (lambda f, i=i: on_progress((i + f) / len(sources))) if on_progress else None
        parts.append(load_images(source, image_size, on_progress=step).images)
    return np.concatenate(parts)


def pretrain_encoder(
    sources: Sequence[str | Path],
    out: str | Path,
    spec: EncoderSpec,
    on_progress: ProgressFn | None = None,
) -> EncoderInfo:
    """Pretrain an MAE on the sources' images and write it (safetensors, provenance in its metadata)."""
    images = load_training_images(
        sources, spec.image_size, (lambda f: on_progress(DECODE_SHARE * f)) if on_progress else None
    )
    return pretrain_on_images(
        images,
        out,
        spec,
        (lambda f: on_progress(DECODE_SHARE + (1 - DECODE_SHARE) * f)) if on_progress else None,
    )


def pretrain_on_images(
    images: np.ndarray, out: str | Path, spec: EncoderSpec, on_progress: ProgressFn | None = None
) -> EncoderInfo:
    """Pretrain on decoded images with the settings of the audit's pretrain stage, then save."""
    from synthaudit.models.pretrain import PretrainConfig, pretrain_mae, save_checkpoint

    pconfig = PretrainConfig(
        preset=spec.mae_preset, images_seen=spec.pretrain_images_seen, seed=spec.seed, device=spec.device
    )
    model, losses = pretrain_mae(images, pconfig, on_progress=on_progress)
    data_hash = images_hash(images)
    final_loss = float(losses[-1]) if losses else None
    path = save_checkpoint(
        model,
        out,
        extra={
            "final_loss": final_loss,
            "seed": spec.seed,
            "data_hash": data_hash,
            "n_images": len(images),
            "steps": len(losses),
            "encoder_spec": spec.to_dict(),
            "pretrain_config": pconfig.to_dict(),
        },
    )
    return EncoderInfo(Path(path), data_hash, len(images), final_loss, len(losses), spec)


def describe_encoder(path: str | Path) -> dict[str, Any]:
    """The provenance stored in an encoder file (raises CheckpointError for anything else)."""
    from synthaudit.models.pretrain import read_checkpoint_metadata

    meta = read_checkpoint_metadata(path)
    return {
        "format": meta.get("format"),
        "mae_config": meta.get("mae_config"),
        "data_hash": meta.get("data_hash"),
        "n_images": meta.get("n_images"),
        "final_loss": meta.get("final_loss"),
        "steps": meta.get("steps"),
        "spec": meta.get("encoder_spec"),
    }
