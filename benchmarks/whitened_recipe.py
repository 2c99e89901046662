"""The default's recipe on any features, in memory: whitening on real + generated, neighbours, the score."""

from __future__ import annotations

import numpy as np

from synthaudit.models import score as sc
from synthaudit.models.encoders import create_encoder
from synthaudit.models.index import search
from synthaudit.models.methods import Neighbours
from synthaudit.models.stages import ATTRIBUTION_K

THUMBNAIL_SIDE = 32  # the side of the default's thumbnails


def pixel_features(images: np.ndarray, side: int = THUMBNAIL_SIDE) -> np.ndarray:
    """The default's view before whitening: the product's `pixels` encoder (NCC thumbnails, min(S, side))."""
    encoder = create_encoder("pixels", side=side, image_size=images.shape[-1], device="cpu")
    return encoder.embed(images, 512)


def whiten(real: np.ndarray, generated: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both sets whitened by one PCA whitening fitted on real + generated (no labels)."""
    w = sc.fit_whitening(np.concatenate([real, generated]))
    return sc.apply_whitening(real, w), sc.apply_whitening(generated, w)


def neighbours(real: np.ndarray, generated: np.ndarray, k: int) -> Neighbours:
    """Exact cosine neighbours as the search stage finds them: real->generated and real->real (k each, self
    excluded), generated->real (the nearest two)."""
    rg_sims, rg_idx = search(real, generated, k, device="cpu")
    rr_sims, rr_idx = search(real, real, k, device="cpu", exclude_self=True)
    gr_sims, gr_idx = search(generated, real, ATTRIBUTION_K, device="cpu")
    return Neighbours(rg_sims, rg_idx, rr_sims, rr_idx, gr_sims, gr_idx)


def fused_score(nb: Neighbours, k: int) -> np.ndarray:
    """density_attribution_score of one view's neighbours."""
    return sc.density_attribution_score(nb.rg_sims, nb.rr_sims, nb.gr_sims, nb.gr_idx, k)


def recipe_score(real: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """The default's score with these features in place of its thumbnails: whiten, search, fuse (K = 1 %)."""
    wr, wg = whiten(real, generated)
    k = sc.default_k(len(wr))
    return fused_score(neighbours(wr, wg, k), k)


def default_score(real: np.ndarray, generated: np.ndarray) -> np.ndarray:
    """The shipped default (density_attribution) on decoded images, recomputed in memory."""
    return recipe_score(pixel_features(real), pixel_features(generated))
