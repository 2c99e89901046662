"""Per-image registration: is a generated image a turned, rescaled and moved copy of a real one, and how?

A fixed grid of geometric versions (models/alignment.py) reaches copies moved, turned *or* rescaled a little;
a copy changed in all of them at once, plus contrast and noise, falls between the grid's points. Here every
image pair that could be a copy is registered instead:

1. **Thumbnails** at side R = min(S, REG_SIDE), each standardised (zero mean, unit variance).
2. **A transform-tolerant descriptor** (Fourier-Mellin): the magnitude of the thumbnail's Fourier transform
   does not move when the image moves; resampled on log-polar coordinates, a rotation or a rescaling of the
   image becomes a shift; the magnitude of *that* map's Fourier transform no longer moves either. Its
   low-frequency coefficients, log-compressed and L2-normalised, are compared by cosine.
3. **A shortlist**: the SHORTLIST nearest real images of every query by the descriptor.
4. **Registration of every shortlisted pair**: rotation and scale from the phase correlation of the two
   log-polar magnitude maps (the peak, within MAX_ANGLE and MAX_ZOOM, refined to a fraction of a bin), the
   real image turned and rescaled by them, then the shift from the peak of the images' cross-correlation
   (within MAX_SHIFT of the side, refined likewise), and finally a few gradient steps on the four parameters
   that raise the normalised cross-correlation (`refine`).
5. **The evidence**: the normalised cross-correlation (NCC, blind to brightness and contrast) of the
   generated image and the registered real one inside a central disc (the corners a turn or a shift fills
   with padding are left out), with the transform found: `warp(real, dx, dy, angle, zoom)` matches the
   generated image.

Pure torch on the audit's device; no label is read. The scoring rule that decides when a registered match
counts is models/registered_score.py.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

REG_SIDE = 32  # thumbnails' side for registration (the pixel view's side): cost grows with its square ...
FINE_REG_SIDE = 64  # ... and the side of an audit small enough to afford it (`registration_side`)
REG_PIXEL_BUDGET = 10_000 * REG_SIDE**2  # generated images x side^2: the challenge-size audit at REG_SIDE
SHORTLIST = 8  # candidate real images per query from the descriptor
LP_RADII = 32  # log-polar samples of the magnitude spectrum along the radius ...
LP_ANGLES = 64  # ... and along the half turn (the spectrum of a real image is symmetric)
DESCRIPTOR_RADII = 8  # low-frequency coefficients of the log-polar map's spectrum kept in the descriptor
DESCRIPTOR_ANGLES = 16
MAX_ANGLE = 15.0  # degrees: the registration looks for turns up to this ...
MAX_ZOOM = 0.2  # ... rescalings up to 20 % ...
MAX_SHIFT = 0.15  # ... and shifts up to 15 % of the side
MASK_RADIUS = 0.42  # the NCC is taken inside a central disc of this radius (fraction of the side)
REFINE_STEPS = 12  # gradient steps of the final refinement ...
MIN_STEP = 1 / 16  # ... a pair stops once its step has shrunk below 1/16 of the first one
PAIR_CHUNK = 256  # pairs registered at once: small batches stay in the CPU's caches (measured: 256 -> 12.7 s, 4096 -> 18.1 s at the challenge's size; the same results)


@dataclass(frozen=True)
class Registered:
    """One registered pair per row: the real image's warp (models.alignment.warp parameters, in pixels of the
    images given) that best matches the generated image, and the NCC after it."""

    ncc: np.ndarray  # float32 [P]
    angle: np.ndarray  # degrees
    zoom: np.ndarray
    dx: np.ndarray  # pixels of the full-size image
    dy: np.ndarray


@dataclass(frozen=True)
class Prepared:
    """What registration needs of one image set, computed once per image (not once per pair)."""

    thumbs: torch.Tensor  # [N, R, R] standardised thumbnails
    lp_phase: torch.Tensor  # complex [N, LP_RADII, LP_ANGLES]: unit-modulus spectrum of the log-polar map
    spectrum: torch.Tensor  # complex [N, R, R]: spectrum of the windowed thumbnail
    descriptor: np.ndarray  # [N, D] Fourier-Mellin descriptors (not yet whitened)

    def rows(self, idx: np.ndarray) -> Prepared:
        """The prepared images at the given rows."""
        t = torch.from_numpy(np.asarray(idx, dtype=np.int64)).to(self.thumbs.device)
        return Prepared(self.thumbs[t], self.lp_phase[t], self.spectrum[t], self.descriptor[np.asarray(idx)])


def registration_side(n_generated: int, image_side: int, source_side: int = 0) -> int:
    """The thumbnails' side for an audit of n_generated images of image_side pixels (as decoded) whose files
    were source_side pixels (the smaller of the two sets' medians; 0: not known): REG_SIDE, or up to
    FINE_REG_SIDE where the files carry that much detail and the registration's work (n_generated x side^2)
    stays within that of the challenge-size audit at REG_SIDE (REG_PIXEL_BUDGET); never above image_side. A
    fine side tells a copy from the real image next to its source (adjacent slices of a volume); on images
    upsampled from a smaller side it only blurs the fit (docs/benchmarks.md, session 9)."""
    fine = min(FINE_REG_SIDE, source_side)
    if fine > REG_SIDE and n_generated * fine**2 <= REG_PIXEL_BUDGET:
        return min(image_side, fine)
    return min(image_side, REG_SIDE)


def prepare(images: np.ndarray, side: int = REG_SIDE, device: torch.device | str = "cpu") -> Prepared:
    """Thumbnails, log-polar phase spectra, thumbnail spectra and descriptors of uint8 images [N, S, S], on
    the given device (every later step runs where they are)."""
    thumbs = thumbnails(images, side, device)
    lp = log_polar_spectra(thumbs)
    centred = (lp - lp.mean(dim=2, keepdim=True)) * _radial_window(
        lp.device
    )  # each radius's mean removed: the
    f = torch.fft.fft2(centred)  # spectrum's fall-off carries no turn
    return Prepared(
        thumbs=thumbs,
        lp_phase=f / f.abs().clamp_min(1e-8),
        spectrum=torch.fft.fft2(thumbs * _hann2d(thumbs.shape[-1], thumbs.device)),
        descriptor=_descriptors_of(centred),
    )


def thumbnails(images: np.ndarray, side: int = REG_SIDE, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 images [N, S, S] -> float thumbnails [N, R, R] (R = min(S, side), area resampling), each
    standardised."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device).float()[:, None]
    r = min(int(images.shape[1]), side)
    if x.shape[-1] != r:
        x = F.interpolate(x, size=(r, r), mode="area")
    return _standardise(x[:, 0])


def _standardise(x: torch.Tensor) -> torch.Tensor:
    flat = x.reshape(len(x), -1)
    flat = flat - flat.mean(dim=1, keepdim=True)
    return (flat / flat.std(dim=1, keepdim=True).clamp_min(1e-6)).reshape(x.shape)


def _hann2d(n: int, device: torch.device | str = "cpu") -> torch.Tensor:
    w = torch.hann_window(n, periodic=False, dtype=torch.float32, device=device)
    return w[:, None] * w[None, :]


def log_polar_spectra(thumbs: torch.Tensor) -> torch.Tensor:
    """Log-polar maps [N, LP_RADII, LP_ANGLES] of the thumbnails' log magnitude spectra (windowed)."""
    side = thumbs.shape[-1]
    r = 2 * side  # zero-padded to twice the side: the spectrum sampled twice as finely
    dev = thumbs.device
    spectrum = torch.fft.fft2(thumbs * _hann2d(side, dev), s=(r, r))
    spectrum = torch.fft.fftshift(spectrum, dim=(-2, -1)).abs().log1p()
    centre = r // 2
    r_min, r_max = 2.0, r / 2 - 2.0
    radii = r_min * (r_max / r_min) ** torch.linspace(0, 1, LP_RADII, device=dev)
    angles = math.pi * torch.arange(LP_ANGLES, dtype=torch.float32, device=dev) / LP_ANGLES
    xs = centre + radii[:, None] * torch.cos(angles)[None, :]
    ys = centre + radii[:, None] * torch.sin(angles)[None, :]
    grid = torch.stack([2 * xs / (r - 1) - 1, 2 * ys / (r - 1) - 1], dim=-1)[None]
    out = F.grid_sample(
        spectrum[:, None], grid.expand(len(thumbs), -1, -1, -1), mode="bilinear", align_corners=True
    )
    return out[:, 0]


def _radial_window(device: torch.device | str = "cpu") -> torch.Tensor:
    return torch.hann_window(LP_RADII + 2, periodic=False, dtype=torch.float32, device=device)[1:-1, None]


def _descriptors_of(centred_lp: torch.Tensor) -> np.ndarray:
    """Fourier-Mellin descriptors [N, DESCRIPTOR_RADII * DESCRIPTOR_ANGLES] of centred log-polar maps: the
    magnitudes of the low-frequency coefficients of each map's spectrum, mean-centred and L2-normalised;
    tolerant to shifts, turns and rescalings of the image. Whiten them over the audit's images before
    comparing (`whitened_descriptors`)."""
    mag = torch.fft.fft2(centred_lp).abs()[:, :DESCRIPTOR_RADII, :DESCRIPTOR_ANGLES]
    d = mag.reshape(len(centred_lp), -1)
    d = d - d.mean(dim=1, keepdim=True)
    return F.normalize(d, dim=1).cpu().numpy().astype(np.float32)


def whitened_descriptors(*sets: np.ndarray) -> list[np.ndarray]:
    """The descriptors of several image sets, PCA-whitened on all of them together (as the default whitens
    its thumbnails: directions every image shares are down-weighted) and L2-normalised."""
    from synthaudit.models.score import apply_whitening, fit_whitening

    whitening = fit_whitening(np.concatenate(sets))
    out = []
    for d in sets:
        w = apply_whitening(d, whitening)
        out.append((w / np.linalg.norm(w, axis=1, keepdims=True).clip(1e-12)).astype(np.float32))
    return out


def _parabola(centre: torch.Tensor, minus: torch.Tensor, plus: torch.Tensor) -> torch.Tensor:
    """Offset (-0.5..0.5) of the vertex of the parabola through three samples around a maximum."""
    denom = minus - 2 * centre + plus
    step = torch.where(denom < 0, 0.5 * (minus - plus) / denom.clamp(max=-1e-9), torch.zeros_like(denom))
    return step.clamp(-0.5, 0.5)


def _peak(corr: torch.Tensor, reach: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-bin location (offsets along both axes, circular) of each map's maximum within +-reach bins."""
    n, h, w = corr.shape
    ry, rx = reach
    oy = torch.arange(-ry, ry + 1, device=corr.device)
    ox = torch.arange(-rx, rx + 1, device=corr.device)
    window = corr[:, oy % h][:, :, ox % w]  # [n, 2ry+1, 2rx+1]
    flat = window.reshape(n, -1).argmax(dim=1)
    cy, cx = oy[flat // window.shape[2]], ox[flat % window.shape[2]]
    rows = torch.arange(n, device=corr.device)
    c = corr[rows, cy % h, cx % w]
    fy = _parabola(c, corr[rows, (cy - 1) % h, cx % w], corr[rows, (cy + 1) % h, cx % w])
    fx = _parabola(c, corr[rows, cy % h, (cx - 1) % w], corr[rows, cy % h, (cx + 1) % w])
    return cy.float() + fy, cx.float() + fx


def _theta(
    angle: torch.Tensor, log_zoom: torch.Tensor, dx: torch.Tensor, dy: torch.Tensor, side: int
) -> torch.Tensor:
    """affine_grid matrices of models.alignment.warp (degrees, log zoom, shifts in pixels of `side`)."""
    a = angle * (math.pi / 180.0)
    inv = torch.exp(-log_zoom)
    c, s = torch.cos(a) * inv, torch.sin(a) * inv
    row0 = torch.stack([c, -s, -2 * dx / side], dim=1)
    row1 = torch.stack([s, c, -2 * dy / side], dim=1)
    return torch.stack([row0, row1], dim=1)


def _theta_of(params: torch.Tensor, side: int) -> torch.Tensor:
    """affine_grid matrices of parameter rows (angle, log zoom, dx, dy)."""
    return _theta(params[:, 0], params[:, 1], params[:, 2], params[:, 3], side)


def _affine_grid(theta: torch.Tensor, side: int) -> torch.Tensor:
    """F.affine_grid(theta, [P, 1, side, side], align_corners=False) by broadcasting (the same grid; torch's
    batched version is several times slower on the CPU for many small images)."""
    c = (2 * torch.arange(side, dtype=theta.dtype, device=theta.device) + 1) / side - 1
    x, y = c[None, None, :], c[None, :, None]
    t = theta[:, :, :, None, None]
    gx = t[:, 0, 0] * x + t[:, 0, 1] * y + t[:, 0, 2]
    gy = t[:, 1, 0] * x + t[:, 1, 1] * y + t[:, 1, 2]
    return torch.stack([gx, gy], dim=-1)


def _warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    x = images[:, None]
    grid = _affine_grid(theta, x.shape[-1])
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)[:, 0]


def _disc(side: int, device: torch.device | str = "cpu") -> torch.Tensor:
    c = (torch.arange(side, dtype=torch.float32, device=device) - (side - 1) / 2) / side
    return ((c[:, None] ** 2 + c[None, :] ** 2) <= MASK_RADIUS**2).float()


def masked_ncc(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """NCC of image pairs [P, R, R] inside the mask."""
    n = mask.sum()
    am = (a * mask).sum(dim=(1, 2)) / n
    bm = (b * mask).sum(dim=(1, 2)) / n
    ac, bc = (a - am[:, None, None]) * mask, (b - bm[:, None, None]) * mask
    num = (ac * bc).sum(dim=(1, 2))
    return num / (ac.pow(2).sum(dim=(1, 2)).sqrt() * bc.pow(2).sum(dim=(1, 2)).sqrt()).clamp_min(1e-8)


def _rotation_scale(
    phase_q: torch.Tensor, phase_r: torch.Tensor, side: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(angle in degrees, log zoom) that turn and rescale the real images onto the queries, from the phase
    correlation of their log-polar magnitude spectra (unit-modulus spectra given: `Prepared.lp_phase`)."""
    corr = torch.fft.ifft2(phase_q * phase_r.conj()).real
    log_step = math.log((side - 2.0) / 2.0) / (LP_RADII - 1)
    reach = (math.ceil(math.log1p(MAX_ZOOM) / log_step), math.ceil(MAX_ANGLE / (180.0 / LP_ANGLES)))
    k_rho, k_theta = _peak(corr, reach)
    # a turn of the image by +a turns its spectrum by +a; a zoom by z shrinks the spectrum by 1 / z
    return -k_theta * (180.0 / LP_ANGLES), -k_rho * log_step


def _shift(query_spectrum: torch.Tensor, moved: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dx, dy) in thumbnail pixels that move `moved` onto the queries (their windowed spectra given): the peak
    of their cross-correlation."""
    side = moved.shape[-1]
    cross = query_spectrum * torch.fft.fft2(_standardise(moved) * _hann2d(side, moved.device)).conj()
    corr = torch.fft.ifft2(cross).real
    reach = max(1, math.ceil(MAX_SHIFT * side))
    ky, kx = _peak(corr, (reach, reach))
    return kx, ky


def refine(
    queries: torch.Tensor, real: torch.Tensor, params: torch.Tensor, steps: int = REFINE_STEPS
) -> torch.Tensor:
    """Raise the masked NCC over (angle, log zoom, dx, dy) [P, 4] from the estimate given: normalised
    gradient steps whose length grows after a step that raised the NCC and halves after one that did not
    (a step that lowers it is not taken); a pair whose step has shrunk below MIN_STEP has converged and is
    left alone."""
    side, dev = queries.shape[-1], queries.device
    mask = _disc(side, dev)
    unit = torch.tensor([1.0, 0.01, 0.25, 0.25], device=dev)  # first step: 1 degree, 1 %, a quarter pixel
    step = torch.ones(len(params), 1, device=dev)
    best = params.clone()
    with torch.no_grad():
        best_ncc = masked_ncc(queries, _warp(real, _theta_of(best, side)), mask)
    for _ in range(steps):
        active = torch.nonzero(step[:, 0] >= MIN_STEP).flatten()
        if len(active) == 0:
            break
        q, r = queries[active], real[active]
        p = best[active].clone().requires_grad_(True)
        ncc = masked_ncc(q, _warp(r, _theta_of(p, side)), mask)
        (grad,) = torch.autograd.grad(ncc.sum(), p)
        with torch.no_grad():
            g = grad * unit
            candidate = best[active] + g / g.norm(dim=1, keepdim=True).clamp_min(1e-12) * unit * step[active]
            value = masked_ncc(q, _warp(r, _theta_of(candidate, side)), mask)
            better = value > best_ncc[active]
            best[active] = torch.where(better[:, None], candidate, best[active])
            best_ncc[active] = torch.where(better, value, best_ncc[active])
            step[active] = torch.where(better[:, None], step[active] * 1.5, step[active] * 0.5)
    return best


def register_pairs(
    queries: Prepared,
    real: Prepared,
    pairs: np.ndarray,
    image_side: int,
    refine_steps: int = REFINE_STEPS,
) -> Registered:
    """Register each (query, real) pair [P, 2] (indices into the prepared sets): the real thumbnail's warp that
    best matches the query's, and the NCC after it. Shifts are reported in pixels of `image_side`."""
    side, dev = queries.thumbs.shape[-1], queries.thumbs.device
    mask = _disc(side, dev)
    out: dict[str, list[np.ndarray]] = {k: [] for k in ("ncc", "angle", "zoom", "dx", "dy")}
    for start in range(0, len(pairs), PAIR_CHUNK):
        chunk = torch.from_numpy(np.ascontiguousarray(pairs[start : start + PAIR_CHUNK])).to(dev)
        qi, ri = chunk[:, 0], chunk[:, 1]
        q, r = queries.thumbs[qi], real.thumbs[ri]
        with torch.no_grad():
            angle, log_zoom = _rotation_scale(queries.lp_phase[qi], real.lp_phase[ri], side)
            zero = torch.zeros_like(angle)
            turned = _warp(r, _theta(angle, log_zoom, zero, zero, side))
            dx, dy = _shift(queries.spectrum[qi], turned)
        # the shift d was found on the turned image: as one warp (output(p) = real(A p - t)), t = A d
        a, inv = angle * (math.pi / 180.0), torch.exp(-log_zoom)
        tx = inv * (torch.cos(a) * dx - torch.sin(a) * dy)
        ty = inv * (torch.sin(a) * dx + torch.cos(a) * dy)
        params = torch.stack([angle, log_zoom, tx, ty], dim=1)
        if refine_steps:
            params = refine(q, r, params, refine_steps)
        with torch.no_grad():
            ncc = masked_ncc(q, _warp(r, _theta_of(params, side)), mask)
        px = image_side / side
        out["ncc"].append(ncc.cpu().numpy())
        out["angle"].append(params[:, 0].cpu().numpy())
        out["zoom"].append(torch.exp(params[:, 1]).cpu().numpy())
        out["dx"].append((params[:, 2] * px).cpu().numpy())
        out["dy"].append((params[:, 3] * px).cpu().numpy())
    return Registered(
        *(
            np.concatenate(out[k]).astype(np.float32) if out[k] else np.zeros(0, np.float32)
            for k in ("ncc", "angle", "zoom", "dx", "dy")
        )
    )
