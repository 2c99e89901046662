"""Stage 4, search: the nearest neighbours of every view (FAISS), with the gated alignment search, then the
per-image registration (models/stages/register.py)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from synthaudit.models.config import AuditConfig
from synthaudit.models.methods import Neighbours, View
from synthaudit.models.stages.common import AuditInputs, Progress, _load_npz, method_for
from synthaudit.models.stages.pretrain import fitted_encoder_path
from synthaudit.models.stages.register import registers, run_register
from synthaudit.models.workdir import (
    WorkDir,
    atomic_save_npz,
    atomic_write_json,
)

ATTRIBUTION_K = 2  # generated -> real neighbours: the nearest and the runner-up
WARP_CHUNK = 4096  # real images warped at once for the alignment search's versions (bounds the memory)


def neighbourhood_size(n_real: int, config: AuditConfig) -> int:
    """Neighbours kept per real image: the evidence k, or the density ratio's k if larger."""
    from synthaudit.models.score import default_k

    return max(config.k, default_k(n_real))


def aligned_view(view: View, config: AuditConfig) -> bool:
    """True when the view's search may be aligned (models/alignment.py): the setting is "auto" or "grid" and the view
    is the thumbnail view, compared by cosine."""
    from synthaudit.models.alignment import ALIGNED_ENCODERS

    return (
        config.alignment in ("auto", "grid") and view.encoder in ALIGNED_ENCODERS and view.metric == "cosine"
    )


def version_features(
    workdir: Path, config: AuditConfig, encoder: str, real: np.ndarray, kind: str = "gate"
) -> list[np.ndarray]:
    """Features of one kind of non-identity geometric versions of the real images (models/alignment.py
    `version_set`: the gate's 8 by default), with the encoder fitted on the un-augmented images."""
    from synthaudit.models.alignment import version_set, warp
    from synthaudit.models.encoders.registry import create_encoder
    from synthaudit.models.encoders.whitened import thumbnail_side

    model = create_encoder(
        encoder,
        checkpoint=fitted_encoder_path(workdir, encoder, config),
        device=config.device,
        image_size=config.image_size,
    )
    side, chunk = real.shape[1], WARP_CHUNK

    def embed_version(v: tuple[float, float, float, float]) -> np.ndarray:
        parts = [
            model.embed(warp(real[i : i + chunk], *v), batch_size=config.batch_size)
            for i in range(0, len(real), chunk)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)

    return [embed_version(v) for v in version_set(kind, side, thumbnail_side(side))]


def stored_versions(arrays: dict[str, np.ndarray], encoder: str) -> list[np.ndarray]:
    """The real set's geometric versions stored as `<encoder>/real_version_<i>` (models/shards.py), in order."""
    out: list[np.ndarray] = []
    while f"{encoder}/real_version_{len(out)}" in arrays:
        out.append(arrays[f"{encoder}/real_version_{len(out)}"])
    return out


def aligned_gr(
    real_versions: list[np.ndarray],
    generated: np.ndarray,
    identity: tuple[np.ndarray, np.ndarray],
    options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """generated -> real nearest two over every version of every real image (identity's given)."""
    from synthaudit.models.alignment import merge_versions
    from synthaudit.models.index import search

    parts = [identity] + [search(generated, v, ATTRIBUTION_K, **options) for v in real_versions]
    n_real = len(real_versions[0]) if real_versions else identity[1].shape[1]
    return merge_versions(parts, min(ATTRIBUTION_K, n_real))


def _aligned_neighbours(
    versions_of: Callable[[str], list[np.ndarray]],
    real: np.ndarray,
    generated: np.ndarray,
    plain: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    gr_aug: tuple[np.ndarray, np.ndarray],
    k: int,
    options: Any,
) -> tuple[tuple[tuple[np.ndarray, np.ndarray], ...], dict[str, Any]]:
    """The gate, then the probe where the gate stays closed, and the neighbours of the search that fired.

    `plain` holds the view's neighbours as they are (rg, rr, gr), `gr_aug` the gate's generated -> real
    search over its versions. A fired gate: every search over the gate's and the fine versions (29 in all). A
    closed gate: the probe compares PROBE_SAMPLE generated rows with its 12 wider versions; fired, every search
    runs over the gate's, the probe's and the wide versions (33). Neither: the plain neighbours, untouched.
    Returns (rg, rr, gr) and the view's record for alignment.json.
    """
    from synthaudit.models.alignment import gate, probe_rows

    gr = plain[2]
    share, fired = gate(gr[0][:, 0], gr_aug[0][:, 0])
    record: dict[str, Any] = {"share": share, "fired": fired}
    added: list[str] = ["fine"] if fired else []
    if not fired:
        rows = probe_rows(len(generated))
        probed = aligned_gr(versions_of("probe"), generated[rows], (gr[0][rows], gr[1][rows]), options)
        record["probe_share"], record["probe_fired"] = gate(gr[0][rows, 0], probed[0][:, 0])
        added = ["probe", "wide"] if record["probe_fired"] else []
    extra = [v for kind in added for v in versions_of(kind)]
    if not extra:
        record["versions"] = 1
        return plain, record
    record["versions"] = 1 + len(versions_of("gate")) + len(extra)
    return _over_versions(versions_of("gate"), extra, real, generated, plain, gr_aug, k, options), record


def _over_versions(
    gate_versions: list[np.ndarray],
    extra: list[np.ndarray],
    real: np.ndarray,
    generated: np.ndarray,
    plain: tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    gr_aug: tuple[np.ndarray, np.ndarray],
    k: int,
    options: Any,
) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """(rg, rr, gr) over the identity, the gate's versions and the added ones: the top-k of the max over
    versions with one pooled exact re-check (models/version_search.py), the added versions' similarity
    matrices computed once for both directions (models.index.both_ways_proposals)."""
    from synthaudit.models.alignment import merge_versions
    from synthaudit.models.index import both_ways_proposals, search
    from synthaudit.models.version_search import max_over_versions

    rg, rr, _ = plain
    both = [both_ways_proposals(v, generated, k, ATTRIBUTION_K, **options) for v in extra]
    gr_parts = [gr_aug] + [  # gr_aug holds the gate's versions already
        search(generated, v, ATTRIBUTION_K, proposals=None if b is None else b[1], **options)
        for v, b in zip(extra, both, strict=True)
    ]
    every = gate_versions + extra
    forward = [None] * len(gate_versions) + [None if b is None else b[0] for b in both]
    return (
        max_over_versions(
            every, generated, k, min(k, len(generated)), rg, proposals=forward, options=options
        ),
        max_over_versions(
            every, real, k + 1, min(k, len(real) - 1), rr, exclude=np.arange(len(real)), options=options
        ),
        merge_versions(gr_parts, min(ATTRIBUTION_K, len(real))),
    )


def run_search(
    workdir: Path,
    inputs: AuditInputs | None,
    config: AuditConfig,
    on_progress: Progress,
    precomputed: dict[str, np.ndarray] | None = None,
) -> None:
    """Per view: nearest generated and other real images of every real image, nearest real of every generated one.

    `precomputed` holds neighbours already found elsewhere, by their neighbours.npz key (the sharded
    search of models/shards.py: `<view>/rg_*`, `<view>/gr_*`, for an aligned view `<view>/gr_aug_*`, and the
    real set's versions as `<encoder>/real_version_<i>`); only the others are searched here. An aligned view
    (`aligned_view`) computes the gate of models/alignment.py (and the probe where the gate stays closed,
    `_aligned_neighbours`); when one fires, the view's neighbours are those of its aligned search. What they
    found, and how many versions were searched, go to alignment.json (methods with the thumbnail view only).
    """
    from synthaudit.models.alignment import ALIGNED_ENCODERS, GATE_RATIO, GATE_SHARE
    from synthaudit.models.index import SearchOptions, search

    done = precomputed or {}

    def found(
        key: str, compute: Callable[[], tuple[np.ndarray, np.ndarray]]
    ) -> tuple[np.ndarray, np.ndarray]:
        return (done[f"{key}_sims"], done[f"{key}_idx"]) if f"{key}_sims" in done else compute()

    features = _load_npz(WorkDir(workdir).features)
    views = method_for(config).views(config)
    arrays: dict[str, np.ndarray] = {}
    record: dict[str, Any] = {
        "setting": config.alignment,
        "gate_ratio": GATE_RATIO,
        "gate_share": GATE_SHARE,
        "views": {},
    }
    versions_of: dict[tuple[str, str], list[np.ndarray]] = {}
    registering = registers(config)
    searched_share = 0.5 if registering else 1.0  # the registration takes the second half of the progress

    def real_versions(encoder: str, kind: str = "gate") -> list[np.ndarray]:
        """One kind of versions of the real set (the gate's may come stored by the sharded search)."""
        key = (encoder, kind)
        if key not in versions_of and kind == "gate" and f"{encoder}/real_version_0" in done:
            versions_of[key] = stored_versions(done, encoder)
        if key not in versions_of:
            decoded = _load_npz(WorkDir(workdir).decoded)["real"]
            versions_of[key] = version_features(workdir, config, encoder, decoded, kind=kind)
        return versions_of[key]

    for i, view in enumerate(views):
        real = features[f"{view.encoder}/real"]
        generated = features[f"{view.encoder}/generated"]
        options: SearchOptions = {
            "metric": view.metric,
            "device": config.device,
            "ivf_min_size": config.ivf_min_size,
        }
        k = neighbourhood_size(len(real), config)
        rg_sims, rg_idx = found(f"{view.key}/rg", lambda: search(real, generated, k, **options))  # noqa: B023 - called at once
        rr_sims, rr_idx = search(real, real, k, exclude_self=True, **options)
        gr_sims, gr_idx = found(f"{view.key}/gr", lambda: search(generated, real, ATTRIBUTION_K, **options))  # noqa: B023 - called at once
        if aligned_view(view, config) and len(real) > 1 and len(generated):
            enc = view.encoder
            gr_aug = found(
                f"{view.key}/gr_aug",
                lambda: aligned_gr(real_versions(enc), generated, (gr_sims, gr_idx), options),  # noqa: B023
            )
            searched, record["views"][view.key] = _aligned_neighbours(
                lambda kind: real_versions(enc, kind),  # noqa: B023 - called at once
                real,
                generated,
                ((rg_sims, rg_idx), (rr_sims, rr_idx), (gr_sims, gr_idx)),
                gr_aug,
                k,
                options,
            )
            (rg_sims, rg_idx), (rr_sims, rr_idx), (gr_sims, gr_idx) = searched
        arrays.update(
            {
                f"{view.key}/rg_sims": rg_sims,
                f"{view.key}/rg_idx": rg_idx,
                f"{view.key}/rr_sims": rr_sims,
                f"{view.key}/rr_idx": rr_idx,
                f"{view.key}/gr_sims": gr_sims,
                f"{view.key}/gr_idx": gr_idx,
            }
        )
        on_progress(searched_share * (i + 1) / len(views))
    if registering:  # the per-image registration (models/stages/register.py), before the marker
        record["registration"] = run_register(workdir, config, lambda f: on_progress(0.5 + 0.5 * f))
    if any(view.encoder in ALIGNED_ENCODERS for view in views):  # the thumbnail view: say what it did
        atomic_write_json(WorkDir(workdir).alignment, record)
    atomic_save_npz(WorkDir(workdir).neighbours, arrays)


def read_alignment(workdir: Path) -> dict[str, Any] | None:
    """What the search stage recorded about the alignment gate (None for a folder made before it)."""
    path = WorkDir(workdir).alignment
    return json.loads(path.read_text()) if path.exists() else None


def load_neighbours(workdir: Path, views: tuple[View, ...]) -> dict[str, Neighbours]:
    """The search stage's neighbours, per view key."""
    data = _load_npz(WorkDir(workdir).neighbours)
    return {
        v.key: Neighbours(
            *(
                data[f"{v.key}/{name}"]
                for name in ("rg_sims", "rg_idx", "rr_sims", "rr_idx", "gr_sims", "gr_idx")
            )
        )
        for v in views
    }
