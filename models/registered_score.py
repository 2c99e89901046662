"""The registered view's evidence: which real image each generated one is a registered copy of, and whether
that match is much better than what registration achieves between unrelated images.

Registration (models/registration.py) raises every pair's similarity: a max over turns, rescalings and shifts
finds *some* good fit for any two alike images. So a registered match counts against the audit's own
baseline, never on its own:
- **attribution**: every generated image credits only the real image it registers best to (a copy of one
  slice does not also lift the adjacent, near-identical one); a real image's registered similarity rho_gr is
  the best among the generated images that credit it;
- **baseline**: the same registration from every real image to its shortlist among the *other* real images
  gives rho_rr, how well the real image matches images that are not copies of it (its near-duplicates
  included);
- **runner-up**: the crediting generated image's best fit to any *other* real image;
- **margin** = atanh(rho_gr) - atanh(max(rho_rr, runner-up)) (Fisher's z, so that 0.99 against 0.95 counts
  more than 0.60 against 0.56). A real image has registered evidence when its margin exceeds MARGIN: a
  generated image fits it much better than any other real image fits it, or fits the generated image.

Both sides go through the same shortlist and the same registration, and the reference images are in the real
pool, so the evidence treats candidates and reference alike (exchangeable). No label is read; MARGIN is a
round design value (docs/design.md record 15), not fitted to a folder.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

    from synthaudit.models.registration import Prepared, Registered

MARGIN = 1.0  # Fisher-z units by which a generated image must fit a real one better than any other real does
REFINED = 2  # per query, the best coarse pairs that are refined
NCC_CLIP = 0.9995  # atanh of a perfect fit is infinite: exact copies count as this NCC


@dataclass(frozen=True)
class RegisteredEvidence:
    """Per real image: its registered evidence and the generated image and transform behind it."""

    margin: np.ndarray  # float64; -inf where no generated image credits the real image; exact where it could
    # count, elsewhere an upper bound no larger than MARGIN (the fast path of registered_evidence)
    ncc: np.ndarray  # rho_gr (nan where none)
    baseline: np.ndarray  # rho_rr (nan where not needed: the margin could not count whatever it is)
    generated: np.ndarray  # int64 index of the crediting generated image (-1 where none)
    angle: np.ndarray  # the real image's warp onto that generated image (models.alignment.warp parameters)
    zoom: np.ndarray
    dx: np.ndarray
    dy: np.ndarray

    def strong(self) -> np.ndarray:
        """Real images whose registered evidence counts (margin above MARGIN)."""
        return self.margin > MARGIN


def _fisher(ncc: np.ndarray) -> np.ndarray:
    return np.arctanh(np.clip(np.asarray(ncc, dtype=np.float64), -NCC_CLIP, NCC_CLIP))


def best_registrations(
    queries: Prepared,
    real: Prepared,
    shortlist: np.ndarray,
    image_side: int,
) -> tuple[np.ndarray, Registered, np.ndarray]:
    """For every query: the shortlisted real image (index into `real`) it registers best to, that
    registration, and the NCC of the runner-up (the best other refined real image; -1 with one candidate).
    Every shortlisted pair is registered coarsely (no refinement); the REFINED best of each query are refined
    and the best of those kept."""
    from synthaudit.models.registration import Registered, register_pairs

    n, m = shortlist.shape
    rows = np.repeat(np.arange(n), m)
    coarse = register_pairs(
        queries, real, np.stack([rows, shortlist.reshape(-1)], 1), image_side, refine_steps=0
    )
    keep = min(REFINED, m)
    top = np.argsort(-coarse.ncc.reshape(n, m), axis=1, kind="stable")[:, :keep]
    chosen = np.take_along_axis(shortlist, top, axis=1)
    fine = register_pairs(
        queries, real, np.stack([np.repeat(np.arange(n), keep), chosen.reshape(-1)], 1), image_side
    )
    fits = fine.ncc.reshape(n, keep)
    best = fits.argmax(axis=1)
    flat = np.arange(n) * keep + best
    picked = Registered(*(getattr(fine, f)[flat] for f in ("ncc", "angle", "zoom", "dx", "dy")))
    runner_up = np.sort(fits, axis=1)[:, -2] if keep > 1 else np.full(n, -1.0, dtype=np.float32)
    return chosen[np.arange(n), best], picked, runner_up


def _real_baseline(
    real: Prepared,
    real_d: np.ndarray,
    rows: np.ndarray,
    search: Callable[..., tuple[np.ndarray, np.ndarray]],
    side: int,
) -> np.ndarray:
    """The best registered NCC of each of the given real images to any *other* real image of its shortlist."""
    from synthaudit.models.registration import SHORTLIST

    m = min(SHORTLIST, len(real_d) - 1)
    _, idx = search(real_d[rows], real_d, m + 1, metric="cosine")
    others = np.array([[j for j in line if j != r][:m] for r, line in zip(rows, idx, strict=True)])
    _, reg, _ = best_registrations(real.rows(rows), real, others, side)
    return reg.ncc.astype(np.float64)


def registered_evidence(
    real_images: np.ndarray,
    generated_images: np.ndarray,
    search: Callable[..., tuple[np.ndarray, np.ndarray]],
    on_progress: Callable[[float], None] = lambda _: None,
    side: int | None = None,
    device: torch.device | str = "cpu",
) -> RegisteredEvidence:
    """The registered evidence of every real image (uint8 [N, S, S] both sets, the same side). `search` is
    models.index.search (or a function of its signature) for the descriptor shortlists; the registration runs
    on `device` (a CUDA device registers the pairs there, batched as on the CPU), with thumbnails of `side`
    (REG_SIDE when not given; the audit's side is models.registration.registration_side)."""
    from synthaudit.models.registration import (
        REG_SIDE,
        SHORTLIST,
        prepare,
        whitened_descriptors,
    )

    n_real, image_side = len(real_images), int(real_images.shape[1])
    reg_side = side or REG_SIDE
    real, gen = prepare(real_images, reg_side, device), prepare(generated_images, reg_side, device)
    real_d, gen_d = whitened_descriptors(real.descriptor, gen.descriptor)
    on_progress(0.1)
    m = min(SHORTLIST, n_real)
    _, gr = search(gen_d, real_d, m, metric="cosine")
    credited, g_reg, g_runner_up = best_registrations(gen, real, gr, image_side)
    on_progress(0.6)
    ncc = np.full(n_real, np.nan)
    generated = np.full(n_real, -1, dtype=np.int64)
    order = np.lexsort((np.arange(len(credited)), -g_reg.ncc))  # best first; ties: the lower index
    first = order[np.unique(credited[order], return_index=True)[1]]  # per credited real image, its best
    ncc[credited[first]] = g_reg.ncc[first]
    generated[credited[first]] = first
    runner_up = np.full(n_real, -1.0)
    runner_up[credited[first]] = g_runner_up[first]
    fit = _fisher(np.nan_to_num(ncc, nan=0.0))
    # the fast path: the margin is at most fit - atanh(runner-up), so the real-vs-real baseline is needed
    # only where that already exceeds MARGIN (exact: the other images cannot count whatever their baseline)
    baseline = np.full(n_real, np.nan)
    open_rows = np.flatnonzero((generated >= 0) & (fit - _fisher(runner_up) > MARGIN))
    if n_real > 1 and len(open_rows):
        baseline[open_rows] = _real_baseline(real, real_d, open_rows, search, image_side)
    on_progress(0.95)
    # elsewhere the bound, capped at MARGIN (it never counts); where a baseline was needed, the exact margin
    margin = np.where(generated >= 0, np.minimum(fit - _fisher(runner_up), MARGIN), -np.inf)
    margin[open_rows] = fit[open_rows] - _fisher(np.fmax(baseline[open_rows], runner_up[open_rows]))

    def per_real(values: np.ndarray, empty: float) -> np.ndarray:
        out = np.full(n_real, empty, dtype=np.float64)
        out[credited[first]] = values[first]
        return out

    return RegisteredEvidence(
        margin=margin,
        ncc=ncc,
        baseline=baseline,
        generated=generated,
        angle=per_real(g_reg.angle, np.nan),
        zoom=per_real(g_reg.zoom, np.nan),
        dx=per_real(g_reg.dx, np.nan),
        dy=per_real(g_reg.dy, np.nan),
    )
