"""The `vit_tokens_whitened` encoder: patch tokens of a seeded, *untrained* ViT, whitened on the audit's images.

Per image: the 64 patch tokens of a randomly initialised `mae_tiny_patch8_64` encoder (no pretraining:
docs/research.md, exp13 and exp17 found that MAE training adds nothing measurable to them), each token
L2-normalised, concatenated (12,288-d), reduced by a seeded Gaussian random projection to 2,048 dims,
then PCA-whitened on real + generated images (never labels). The pretrain stage fits it and stores the
ViT weights, the normalisation and the whitening (about 40 MB) so that every worker embeds alike; the
projection is rebuilt from its seed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F

from synthaudit.models.embed import embed_images
from synthaudit.models.encoders.registry import EncoderWeightsError, register_encoder
from synthaudit.models.score import Whitening, apply_whitening, fit_whitening

if TYPE_CHECKING:  # models.mae (timm) is imported where it is used
    from synthaudit.models.mae import MaskedAutoencoder

PRESET = "mae_tiny_patch8_64"
PROJECTED_DIM = 2048
PROJECTION_SEED_OFFSET = 7919  # the projection's seed is the audit's seed + this


def random_vit(seed: int, preset: str = PRESET) -> MaskedAutoencoder:
    """The untrained ViT of a seed (the global RNG state is left as it was)."""
    from synthaudit.models.mae import create_mae

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = create_mae(preset)
    return model.eval()


def projection_matrix(d_in: int, seed: int, d_out: int = PROJECTED_DIM) -> np.ndarray:
    """A seeded Gaussian random projection [d_in, d_out] (Johnson-Lindenstrauss scaling)."""
    rng = np.random.default_rng(seed + PROJECTION_SEED_OFFSET)
    return rng.standard_normal((d_in, d_out), dtype=np.float32) / np.float32(np.sqrt(d_out))


@dataclass
class TokenProjector:
    """uint8 images -> projected token features (before whitening)."""

    model: MaskedAutoencoder
    mean: float
    std: float
    seed: int
    device: torch.device

    def __post_init__(self) -> None:
        self.model = self.model.to(self.device)
        n_patches, width = self.model.config.num_patches, self.model.config.embed_dim
        self._projection = torch.from_numpy(projection_matrix(n_patches * width, self.seed)).to(self.device)

    def __call__(self, batch: torch.Tensor) -> torch.Tensor:
        from synthaudit.models.pretrain import to_model_input

        x = to_model_input(batch, self.model.config.img_size, self.mean, self.std)
        tokens = F.normalize(self.model.patch_features(x).float(), dim=-1)  # [B, L, D], one norm per patch
        flat = F.normalize(tokens.flatten(1), dim=1)
        return flat @ self._projection

    def embed(self, images: np.ndarray, batch_size: int = 256, on_progress=None) -> np.ndarray:
        return embed_images(self, images, batch_size, self.device, on_progress)


@dataclass
class FittedVitTokens:
    """What the pretrain stage fits: the seeded ViT, the input normalisation and the whitening."""

    model: MaskedAutoencoder
    mean: float
    std: float
    seed: int
    whitening: Whitening


def fit_vit_tokens(images: np.ndarray, seed: int, device: str = "auto", on_progress=None) -> FittedVitTokens:
    """Build the seeded ViT and fit the whitening on the projected tokens of real + generated images."""
    from synthaudit.models.device import resolve_device
    from synthaudit.models.pretrain import normalisation_stats

    stats = normalisation_stats(images)
    model = random_vit(seed)
    projector = TokenProjector(model, stats["mean"], stats["std"], seed, resolve_device(device))
    features = projector.embed(images, on_progress=on_progress)
    return FittedVitTokens(model.cpu(), stats["mean"], stats["std"], seed, fit_whitening(features))


def save_vit_tokens(fitted: FittedVitTokens, path: Path) -> None:
    """Store the fitted state as safetensors (atomic)."""
    from safetensors.torch import save_file

    tensors = {f"vit.{k}": v.detach().cpu().contiguous() for k, v in fitted.model.state_dict().items()}
    for name in ("mean", "components", "scale"):
        tensors[f"whitening.{name}"] = torch.from_numpy(np.ascontiguousarray(getattr(fitted.whitening, name)))
    metadata = {
        "preset": PRESET,
        "seed": str(fitted.seed),
        "mean": repr(float(fitted.mean)),
        "std": repr(float(fitted.std)),
        "residual_scale": json.dumps(fitted.whitening.residual_scale),
        "projected_dim": str(PROJECTED_DIM),
    }
    tmp = path.with_name(f".{path.name}.tmp")
    save_file(tensors, str(tmp), metadata=metadata)
    tmp.replace(path)


def load_vit_tokens(path: Path) -> FittedVitTokens:
    """The fitted state stored by save_vit_tokens."""
    from safetensors import safe_open

    from synthaudit.models.mae import create_mae

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {name: f.get_tensor(name) for name in f.keys()}
    model = create_mae(meta.get("preset", PRESET))
    model.load_state_dict({k[len("vit.") :]: v for k, v in tensors.items() if k.startswith("vit.")})
    whitening = Whitening(
        tensors["whitening.mean"].numpy(),
        tensors["whitening.components"].numpy(),
        tensors["whitening.scale"].numpy(),
        float(json.loads(meta["residual_scale"])),
    )
    return FittedVitTokens(
        model.eval(), float(meta["mean"]), float(meta["std"]), int(meta["seed"]), whitening
    )


class VitTokensEncoder:
    """Projected ViT tokens through the whitening fitted on the audit's images."""

    def __init__(self, fitted: FittedVitTokens, device: str = "auto", name: str = "vit_tokens_whitened"):
        from synthaudit.models.device import resolve_device

        self.name, self.fitted = name, fitted
        self.projector = TokenProjector(
            fitted.model, fitted.mean, fitted.std, fitted.seed, resolve_device(device)
        )

    def embed(self, images: np.ndarray, batch_size: int = 64, on_progress=None) -> np.ndarray:
        """Whitened, L2-normalised features [N, 2048]."""
        return apply_whitening(
            self.projector.embed(images, max(batch_size, 256), on_progress), self.fitted.whitening
        )


@register_encoder("vit_tokens_whitened")
def _make_vit_tokens(*, name: str, weights=None, checkpoint=None, device="auto", image_size=64, **opts):
    if checkpoint is None or not Path(checkpoint).exists():
        raise EncoderWeightsError("vit_tokens_whitened needs the state fitted in the audit's pretrain stage")
    return VitTokensEncoder(load_vit_tokens(Path(checkpoint)), device=device, name=name)
