"""Stage 2, pretrain: the self-supervised encoders fitted on the audit's own images (no labels)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from synthaudit.models.config import AuditConfig
from synthaudit.models.stages.common import AuditInputs, Progress, _part, method_for
from synthaudit.models.stages.decode import load_decoded
from synthaudit.models.workdir import (
    FITTED_ENCODER_FILES,
    WorkDir,
    atomic_write_bytes,
)


def _fitted_encoders(config: AuditConfig) -> set[str]:
    """Encoders of the method that are fitted on the audit's own images in the pretrain stage."""
    return {view.encoder for view in method_for(config).views(config)} & set(FITTED_ENCODER_FILES)


def mae_checkpoint_path(workdir: Path, config: AuditConfig) -> Path:
    """The MAE checkpoint an audit embeds with: the user's, or the one pretrained in the audit."""
    return Path(config.checkpoint) if config.checkpoint else WorkDir(workdir).mae_checkpoint


def fitted_encoder_path(workdir: Path, encoder: str, config: AuditConfig) -> Path | None:
    """Where the fitted state of an encoder lives (None for encoders that need no fitting)."""
    if encoder == "mae":
        return mae_checkpoint_path(workdir, config)
    return WorkDir(workdir).fitted_encoder(encoder)


def _pretrain_mae(workdir: Path, images: np.ndarray, config: AuditConfig, on_progress: Progress) -> None:
    from synthaudit.models.pretrain import PretrainConfig, pretrain_mae, save_checkpoint

    pconfig = PretrainConfig(
        preset=config.mae_preset,
        images_seen=config.pretrain_images_seen,
        seed=config.seed,
        device=config.device,
        compile=config.compile,
    )
    model, losses = pretrain_mae(images, pconfig, on_progress=on_progress)
    save_checkpoint(
        model,
        mae_checkpoint_path(workdir, config),
        extra={
            "final_loss": losses[-1] if losses else None,
            "seed": config.seed,
            "steps": len(losses),
            "images_seen": int(getattr(model, "images_seen", 0)),
        },
    )


def _fit_whitening(workdir: Path, images: np.ndarray, config: AuditConfig, on_progress: Progress) -> None:
    from synthaudit.models.encoders.whitened import fit_pixel_whitening, save_whitening, thumbnail_side

    whitening = fit_pixel_whitening(images, config.image_size, device=config.device)
    save_whitening(
        whitening, workdir / FITTED_ENCODER_FILES["pixels_whitened"], thumbnail_side(config.image_size)
    )
    on_progress(1.0)


def _fit_vit_tokens(workdir: Path, images: np.ndarray, config: AuditConfig, on_progress: Progress) -> None:
    from synthaudit.models.encoders.vit_tokens import fit_vit_tokens, save_vit_tokens

    fitted = fit_vit_tokens(images, config.seed, device=config.device, on_progress=on_progress)
    save_vit_tokens(fitted, workdir / FITTED_ENCODER_FILES["vit_tokens_whitened"])
    on_progress(1.0)


_FITTERS = {"mae": _pretrain_mae, "pixels_whitened": _fit_whitening, "vit_tokens_whitened": _fit_vit_tokens}


def run_pretrain(workdir: Path, inputs: AuditInputs, config: AuditConfig, on_progress: Progress) -> None:
    """Fit the method's self-supervised encoders (MAE, whitening) on real + generated images, no labels."""
    todo = sorted(e for e in _fitted_encoders(config) if not (e == "mae" and config.checkpoint))
    if todo:
        real, generated = load_decoded(workdir)
        images = np.concatenate([real.images, generated.images])
        for i, encoder in enumerate(todo):
            span = 1.0 / len(todo)
            _FITTERS[encoder](workdir, images, config, _part(on_progress, i, span))
    atomic_write_bytes(WorkDir(workdir).pretrained, b"ok\n")
