"""Stage 3, embed: features of both sets with every encoder the method's views need."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthaudit.models.config import AuditConfig
from synthaudit.models.stages.common import AuditInputs, Progress, _part, method_for
from synthaudit.models.stages.decode import load_decoded
from synthaudit.models.stages.pretrain import fitted_encoder_path
from synthaudit.models.workdir import (
    WorkDir,
    atomic_save_npz,
)


def embed_features(
    workdir: Path, config: AuditConfig, images: np.ndarray, on_progress: Progress
) -> dict[str, np.ndarray]:
    """Features of images with every encoder the method's views need, keyed by encoder name."""
    from synthaudit.models.encoders.registry import create_encoder

    names = sorted({view.encoder for view in method_for(config).views(config)})
    out: dict[str, np.ndarray] = {}
    for i, name in enumerate(names):
        encoder = create_encoder(
            name,
            weights=Path(config.weights) if config.weights else None,
            checkpoint=fitted_encoder_path(workdir, name, config),
            device=config.device,
            image_size=config.image_size,
        )
        span = 1.0 / len(names)
        out[name] = encoder.embed(
            images, batch_size=config.batch_size, on_progress=_part(on_progress, i, span)
        )
    return out


def run_embed(workdir: Path, inputs: AuditInputs, config: AuditConfig, on_progress: Progress) -> None:
    """Embed both sets with every encoder the method's views need."""
    real, generated = load_decoded(workdir)
    features = embed_features(workdir, config, np.concatenate([real.images, generated.images]), on_progress)
    arrays: dict[str, np.ndarray] = {}
    for name, both in features.items():
        arrays[f"{name}/real"] = both[: len(real.ids)]
        arrays[f"{name}/generated"] = both[len(real.ids) :]
    atomic_save_npz(WorkDir(workdir).features, arrays)
