"""Part of stage 4 (search): the registration of every generated image to its shortlisted real images
(models/registration.py, models/registered_score.py), for the methods with the thumbnail view.

It runs at the end of the search stage, over the whole pool (real images and the reference set) and every
generated image, in the process that writes the stage's neighbours: a sharded search runs it once, at the
merge, so a sharded audit registers exactly what an unsharded one does. Its artifact, registration.npz, holds
per pool image the margin, the registered NCC and baseline, the crediting generated image and the transform;
the decide stage lifts the images whose margin counts (`lift_scores`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from synthaudit.models.config import AuditConfig
from synthaudit.models.registered_score import MARGIN, RegisteredEvidence
from synthaudit.models.stages.common import Progress, _load_npz, method_for
from synthaudit.models.workdir import WorkDir, atomic_save_npz

REGISTERED_ENCODER = "pixels_whitened"  # the methods whose view this is register their images
FIELDS = ("margin", "ncc", "baseline", "generated", "angle", "zoom", "dx", "dy")


def registers(config: AuditConfig) -> bool:
    """True when the audit registers its images: the method has the thumbnail view and alignment is "auto"."""
    return config.alignment == "auto" and any(
        v.encoder == REGISTERED_ENCODER for v in method_for(config).views(config)
    )


def run_register(workdir: Path, config: AuditConfig, on_progress: Progress) -> dict[str, Any]:
    """Register the decoded pool and generated images; write registration.npz; return its summary for
    alignment.json (how many images have registered evidence, and the margin that counts); deterministic, so
    that a sharded audit records what an unsharded one does."""
    from synthaudit.models.device import resolve_device
    from synthaudit.models.index import search
    from synthaudit.models.registered_score import registered_evidence
    from synthaudit.models.registration import registration_side

    decoded = _load_npz(WorkDir(workdir).decoded)
    real, generated = decoded["real"], decoded["generated"]
    if len(real) == 0 or len(generated) == 0:
        return {"strong": 0, "margin": MARGIN}

    def shortlist(queries: np.ndarray, base: np.ndarray, k: int, **kw: Any) -> tuple[np.ndarray, np.ndarray]:
        return search(queries, base, k, device=config.device, ivf_min_size=config.ivf_min_size, **kw)

    sources = decoded.get("source_sides")  # absent in a work folder decoded before session 9
    side = registration_side(
        len(generated), int(real.shape[1]), int(sources.min()) if sources is not None else 0
    )
    evidence = registered_evidence(
        real, generated, shortlist, on_progress, side=side, device=resolve_device(config.device)
    )
    atomic_save_npz(WorkDir(workdir).registration, {f: getattr(evidence, f) for f in FIELDS})
    return {"strong": int(evidence.strong().sum()), "margin": MARGIN, "side": side}


def read_registration(workdir: Path) -> RegisteredEvidence | None:
    """The registered evidence of a work folder's pool (None where the audit did not register)."""
    path = WorkDir(workdir).registration
    if not path.exists():
        return None
    data = _load_npz(path)
    return RegisteredEvidence(**{f: data[f] for f in FIELDS})


def lift_scores(scores: np.ndarray, evidence: RegisteredEvidence | None) -> np.ndarray:
    """The pool's scores with every image whose registered evidence counts placed above all others, in the
    order of its margin: score = max(1, max score) + margin. Where no image's counts, the scores as they
    are, bit for bit."""
    scores = np.asarray(scores, dtype=np.float64)
    if evidence is None:
        return scores
    strong = evidence.strong()
    if not strong.any():
        return scores
    top = max(1.0, float(scores.max()))
    return np.where(strong, top + evidence.margin, scores)


def registered_copies(
    evidence: RegisteredEvidence | None, ids: list[str], generated_ids: list[str], n_real: int
) -> list[dict[str, Any]] | None:
    """The metrics document's list of the real images (not the reference set's) whose registered evidence
    counts: the generated copy, the NCC after registration and the baseline it beat, and the transform
    (`warp(real, dx, dy, angle, zoom)` matches the copy; shifts in pixels of the working image size), highest
    margin first. None where the audit did not register."""
    if evidence is None:
        return None
    strong = np.flatnonzero(evidence.strong()[:n_real])
    strong = strong[np.argsort(-evidence.margin[strong], kind="stable")]
    return [
        {
            "id": ids[i],
            "generated": generated_ids[int(evidence.generated[i])],
            "ncc": round(float(evidence.ncc[i]), 4),
            "baseline": round(float(evidence.baseline[i]), 4),
            "margin": round(float(evidence.margin[i]), 3),
            "angle": round(float(evidence.angle[i]), 2),
            "zoom": round(float(evidence.zoom[i]), 4),
            "dx": round(float(evidence.dx[i]), 2),
            "dy": round(float(evidence.dy[i]), 2),
        }
        for i in strong
    ]
