"""The audit as five idempotent stages over a work folder, shared by the CLI, the embedded runner and Celery."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from models import decide, metrics
from models.config import AuditConfig
from models.decide import choose_threshold, label_metrics
from models.io import ImageSet, Rejected, load_images
from models.methods import Method, Neighbours, ScoreInputs, ScoreOutput, View, get_method, resolve_method_name
from models.results import ResultRow, write_results_csv
from models.workdir import (
    FITTED_ENCODER_FILES,
    STAGE_ARTIFACTS,
    WorkDir,
    atomic_save_npz,
    atomic_write_bytes,
    atomic_write_json,
)

STAGES = ("decode", "pretrain", "embed", "search", "decide")
# Share of the overall progress each stage takes (roughly its share of CPU time).
STAGE_WEIGHTS = {"decode": 0.10, "pretrain": 0.55, "embed": 0.20, "search": 0.10, "decide": 0.05}
ARTIFACTS = STAGE_ARTIFACTS  # the file that marks each stage done (models/workdir.py names them all)

Progress = Callable[[float], None]


@dataclass
class AuditInputs:
    """Where the real and generated images are, optional labels for some real images, and an optional
    reference set: real images known not to be in the training set (scored with the real ones)."""

    real: Path
    generated: Path
    labels: dict[str, int] | None = None
    reference: Path | None = None


@dataclass
class AuditOutcome:
    """What an audit produced: the rows of results.csv, metrics.json and rejected files."""

    workdir: Path
    rows: list[ResultRow]
    metrics: dict[str, Any]
    rejected: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    reference_rows: list[ResultRow] = field(default_factory=list)  # the reference set's images, scored


def _noop(_: float) -> None:
    return None


def _part(on_progress: Progress, i: int, span: float) -> Progress:
    """Progress of part i (span wide) of a stage, reported on the whole stage's 0..1 scale."""
    return lambda f: on_progress(span * (i + f))


def _named(on_progress: Callable[[str, float], None], stage: str) -> Progress:
    """A stage's progress reported with the stage's name."""
    return lambda f: on_progress(stage, f)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def stage_done(stage: str, workdir: Path) -> bool:
    """True when the stage's artifact exists (the stage will be skipped)."""
    return WorkDir(workdir).stage_artifact(stage).exists()


def method_for(config: AuditConfig) -> Method:
    """The method object an audit config names."""
    return get_method(config.method)


def _record_timing(workdir: Path, stage: str, seconds: float) -> None:
    path = WorkDir(workdir).timings
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[stage] = round(seconds, 3)
    atomic_write_json(path, timings)


# --- decode -----------------------------------------------------------------------------------------


def _rejected_dicts(items: list[Rejected]) -> list[dict[str, str]]:
    return [{"name": r.name, "reason": r.reason} for r in items]


def run_decode(workdir: Path, inputs: AuditInputs, config: AuditConfig, on_progress: Progress) -> None:
    """Decode the image sets once into a uint8 cache. Reference images join the real pool (after the
    real ones, marked in `real_from_reference`), so that every later stage treats them exactly like
    the candidates: same pool, same neighbours, exchangeable scores."""
    parts = 3 if inputs.reference is not None else 2
    real = load_images(inputs.real, config.image_size, on_progress=lambda f: on_progress(f / parts))
    generated = load_images(
        inputs.generated, config.image_size, on_progress=lambda f: on_progress((1 + f) / parts)
    )
    rejected = {"real": _rejected_dicts(real.rejected), "generated": _rejected_dicts(generated.rejected)}
    pool_ids, pool_images = list(real.ids), real.images
    from_reference = np.zeros(len(real.ids), dtype=bool)
    if inputs.reference is not None:
        reference = load_images(
            inputs.reference, config.image_size, on_progress=lambda f: on_progress((2 + f) / 3)
        )
        rejected["reference"] = _rejected_dicts(reference.rejected)
        pool_ids += reference.ids
        pool_images = np.concatenate([real.images, reference.images])
        from_reference = np.r_[from_reference, np.ones(len(reference.ids), dtype=bool)]
    atomic_write_json(WorkDir(workdir).rejected, rejected)
    atomic_save_npz(
        WorkDir(workdir).decoded,
        {
            "real_ids": np.array(pool_ids, dtype=str),
            "real": pool_images,
            "real_from_reference": from_reference,
            "generated_ids": np.array(generated.ids, dtype=str),
            "generated": generated.images,
        },
    )


def load_decoded(workdir: Path) -> tuple[ImageSet, ImageSet]:
    """The decoded real pool (real images, then any reference images) and the generated set."""
    data = _load_npz(WorkDir(workdir).decoded)
    real = ImageSet(ids=[str(i) for i in data["real_ids"]], images=data["real"], rejected=[])
    generated = ImageSet(ids=[str(i) for i in data["generated_ids"]], images=data["generated"], rejected=[])
    return real, generated


def load_reference_mask(workdir: Path) -> np.ndarray:
    """For each image of the real pool: True when it came from the reference set."""
    with np.load(WorkDir(workdir).decoded, allow_pickle=False) as data:
        if "real_from_reference" in data.files:
            return np.asarray(data["real_from_reference"], dtype=bool)
        return np.zeros(len(data["real_ids"]), dtype=bool)


# --- pretrain ---------------------------------------------------------------------------------------


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
    from models.pretrain import PretrainConfig, pretrain_mae, save_checkpoint

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
    from models.encoders.whitened import fit_pixel_whitening, save_whitening, thumbnail_side

    whitening = fit_pixel_whitening(images, config.image_size, device=config.device)
    save_whitening(
        whitening, workdir / FITTED_ENCODER_FILES["pixels_whitened"], thumbnail_side(config.image_size)
    )
    on_progress(1.0)


def _fit_vit_tokens(workdir: Path, images: np.ndarray, config: AuditConfig, on_progress: Progress) -> None:
    from models.encoders.vit_tokens import fit_vit_tokens, save_vit_tokens

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


# --- embed ------------------------------------------------------------------------------------------


def embed_features(
    workdir: Path, config: AuditConfig, images: np.ndarray, on_progress: Progress
) -> dict[str, np.ndarray]:
    """Features of images with every encoder the method's views need, keyed by encoder name."""
    from models.encoders.registry import create_encoder

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


# --- search -----------------------------------------------------------------------------------------


ATTRIBUTION_K = 2  # generated -> real neighbours: the nearest and the runner-up
WARP_CHUNK = 4096  # real images warped at once for the alignment search's versions (bounds the memory)


def neighbourhood_size(n_real: int, config: AuditConfig) -> int:
    """Neighbours kept per real image: the evidence k, or the density ratio's k if larger."""
    from models.score import default_k

    return max(config.k, default_k(n_real))


def aligned_view(view: View, config: AuditConfig) -> bool:
    """True when the view's search may be aligned (models/alignment.py): the setting is "auto" and the view
    is the thumbnail view, compared by cosine."""
    from models.alignment import ALIGNED_ENCODERS

    return config.alignment == "auto" and view.encoder in ALIGNED_ENCODERS and view.metric == "cosine"


def version_features(
    workdir: Path, config: AuditConfig, encoder: str, real: np.ndarray, kind: str = "gate"
) -> list[np.ndarray]:
    """Features of one kind of non-identity geometric versions of the real images (models/alignment.py
    `version_set`: the gate's 8 by default), with the encoder fitted on the un-augmented images."""
    from models.alignment import version_set, warp
    from models.encoders.registry import create_encoder
    from models.encoders.whitened import thumbnail_side

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


def aligned_rg(
    real_versions: list[np.ndarray],
    generated: np.ndarray,
    identity: tuple[np.ndarray, np.ndarray],
    k: int,
    options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """real -> generated top-k of the max over versions of each real image (identity's top-k given)."""
    from models.alignment import merge_versions
    from models.index import search

    parts = [identity] + [search(v, generated, k, **options) for v in real_versions]
    return merge_versions(parts, min(k, len(generated)))


def aligned_gr(
    real_versions: list[np.ndarray],
    generated: np.ndarray,
    identity: tuple[np.ndarray, np.ndarray],
    options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """generated -> real nearest two over every version of every real image (identity's given)."""
    from models.alignment import merge_versions
    from models.index import search

    parts = [identity] + [search(generated, v, ATTRIBUTION_K, **options) for v in real_versions]
    n_real = len(real_versions[0]) if real_versions else identity[1].shape[1]
    return merge_versions(parts, min(ATTRIBUTION_K, n_real))


def _aligned_rr(
    real_versions: list[np.ndarray],
    real: np.ndarray,
    identity: tuple[np.ndarray, np.ndarray],
    k: int,
    options: Any,
) -> tuple[np.ndarray, np.ndarray]:
    """real -> other real top-k of the max over versions of the query image (its own index excluded)."""
    from models.alignment import merge_versions
    from models.index import search

    parts = [identity] + [search(v, real, k + 1, **options) for v in real_versions]
    return merge_versions(parts, min(k, len(real) - 1), exclude=np.arange(len(real)))


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
    from models.alignment import gate, probe_rows

    rg, rr, gr = plain
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
    every = versions_of("gate") + extra
    record["versions"] = 1 + len(every)
    searched = (
        aligned_rg(every, generated, rg, k, options),
        _aligned_rr(every, real, rr, k, options),
        aligned_gr(extra, generated, gr_aug, options),  # gr_aug holds the gate's versions already
    )
    return searched, record


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
    from models.alignment import ALIGNED_ENCODERS, GATE_RATIO, GATE_SHARE
    from models.index import SearchOptions, search

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
        on_progress((i + 1) / len(views))
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


# --- decide -----------------------------------------------------------------------------------------


def _labelled_positions(ids: list[str], labels: dict[str, int] | None) -> tuple[np.ndarray, np.ndarray]:
    if not labels:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    position = {image_id: i for i, image_id in enumerate(ids)}
    known = [(position[i], int(v)) for i, v in labels.items() if i in position]
    if not known:
        raise ValueError("none of the labelled ids is among the real images")
    idx, values = zip(*sorted(known))
    return np.array(idx, dtype=np.int64), np.array(values, dtype=np.int64)


def decision_rule_for(config: AuditConfig, has_reference: bool) -> str:
    """The rule an audit applies: "auto" means "fdr" whenever known-not-used images exist, else the
    F1 calibration when labels of both kinds exist (never without a reference), else the prior."""
    if config.decision == "fdr" and not has_reference:
        raise ValueError(
            "decision 'fdr' needs images known not to be used: labels with used=0 or a reference set"
        )
    if config.decision == "auto" and has_reference:
        return "fdr"
    return config.decision


@dataclass
class Decisions:
    """What the decide stage concluded for the real images (the rows of results.csv)."""

    used: np.ndarray  # int8 per real image
    threshold: float
    rule: str
    p_values: np.ndarray  # nan where not tested (uncalibrated, or a reference image)
    q_values: np.ndarray
    leakage: dict[str, Any] | None


def _fdr_threshold(scores: np.ndarray, flagged: np.ndarray) -> float:
    """The score threshold the BH decisions amount to: the lowest flagged score (none: above all)."""
    return float(scores[flagged].min()) if flagged.any() else decide.just_above(float(scores.max()))


def decide_images(
    pool_scores: np.ndarray,
    from_reference: np.ndarray,
    labelled: np.ndarray,
    labels: np.ndarray,
    config: AuditConfig,
) -> Decisions:
    """Decisions, p-values and the leakage test for the real images (the pool minus the reference set).

    The reference = reference-set images + real images labelled used=0; the candidates = the other
    real images (known-used ones included: they measure power).
    """
    from models import calibration

    n_real = int((~from_reference).sum())
    scores = pool_scores[:n_real]
    reference = from_reference.copy()
    reference[labelled[labels == 0]] = True
    candidates = ~reference
    p_values = np.full(n_real, np.nan)
    q_values = np.full(n_real, np.nan)
    leakage = None
    if reference.any() and candidates[:n_real].any():
        result = calibration.calibrate(pool_scores[candidates], pool_scores[reference], fdr=config.fdr)
        p_values[candidates[:n_real]], q_values[candidates[:n_real]] = result.p_values, result.q_values
        leakage = result.leakage
    rule = decision_rule_for(config, leakage is not None)
    if rule == "fdr":
        used = (np.nan_to_num(q_values, nan=1.0) <= config.fdr).astype(np.int8)
        threshold = _fdr_threshold(scores, used.astype(bool))
    else:
        threshold, rule = choose_threshold(scores, labelled, labels, config)
        used = decide.apply_threshold(scores, threshold)
    return Decisions(used, threshold, rule, p_values, q_values, leakage)


def _power(decisions: Decisions, labelled: np.ndarray, labels: np.ndarray) -> dict[str, Any] | None:
    """Recall of the known-used images at the audit's decisions (the power of a calibrated audit)."""
    known_used = labelled[labels == 1]
    if decisions.leakage is None or known_used.size == 0:
        return None
    found = int(decisions.used[known_used].sum())
    return {"n_known_used": int(known_used.size), "flagged": found, "recall": found / known_used.size}


def _result_rows(
    ids: list[str],
    scores: np.ndarray,
    d: Decisions,
    roles: np.ndarray,
    output: ScoreOutput,
    generated_ids: list[str],
) -> list[ResultRow]:
    def maybe(value: float) -> float | None:
        return None if np.isnan(value) else float(value)

    return [
        ResultRow(
            id=image_id,
            used=int(d.used[i]) if i < d.used.size else 0,
            score=float(scores[i]),
            nearest_generated=generated_ids[int(output.evidence_idx[i, 0])],
            similarity=float(output.evidence_sims[i, 0]),
            p_value=maybe(d.p_values[i]) if i < d.p_values.size else None,
            q_value=maybe(d.q_values[i]) if i < d.q_values.size else None,
            role=str(roles[i]),
        )
        for i, image_id in enumerate(ids)
    ]


def run_decide(workdir: Path, inputs: AuditInputs, config: AuditConfig, on_progress: Progress) -> None:
    """Score the pool, decide the real images, write results.csv (real images), reference.csv (the
    reference set's images, when given), scores.npz and metrics.json."""
    method = method_for(config)
    pool, generated = load_decoded(workdir)
    from_reference = load_reference_mask(workdir)
    neighbours = load_neighbours(workdir, method.views(config))
    output = method.score(ScoreInputs(pool.images, generated.images, neighbours), config)
    scores = np.asarray(output.scores, dtype=np.float64)
    n_real = int((~from_reference).sum())
    labelled, labels = _labelled_positions(pool.ids[:n_real], inputs.labels)
    d = decide_images(scores, from_reference, labelled, labels, config)
    output = ScoreOutput(scores, output.evidence_idx[:, : config.k], output.evidence_sims[:, : config.k])
    roles = np.full(len(pool.ids), "candidate", dtype=object)
    roles[from_reference] = "reference"
    roles[labelled[labels == 0]] = "reference"
    rows = _result_rows(pool.ids, scores, d, roles, output, generated.ids)
    atomic_save_npz(
        WorkDir(workdir).scores,
        {
            "scores": scores,
            "evidence_idx": output.evidence_idx,
            "evidence_sims": output.evidence_sims,
            "from_reference": from_reference,
            "p_values": d.p_values,
            "q_values": d.q_values,
        },
    )
    write_results_csv(rows[:n_real], WorkDir(workdir).results_csv)
    if from_reference.any():
        write_results_csv(rows[n_real:], WorkDir(workdir).reference_csv)
    n_reference = int(from_reference.sum()) + int((labels == 0).sum())
    applied_on = labelled if d.rule != "fdr" else labelled[labels == 1]  # fdr: references are not decided
    summary: dict[str, Any] = {
        "method": resolve_method_name(config.method),
        "decision_rule": d.rule,
        "threshold": d.threshold,
        "calibrated": d.leakage is not None,
        "fdr": config.fdr if d.leakage is not None else None,
        "n_real": n_real,
        "n_candidates": n_real - int((labels == 0).sum()),
        "n_reference": n_reference,
        "n_reference_set": int(from_reference.sum()),
        "n_generated": len(generated.ids),
        "n_decided_used": int(d.used.sum()),
        "n_labelled": len(labelled),
        "labelled": _labelled_summary(scores[:n_real], d, labelled, labels, applied_on, config),
        "leakage": d.leakage,
        "power": _power(d, labelled, labels),
        "alignment": read_alignment(workdir),
    }
    on_progress(1.0)
    atomic_write_json(WorkDir(workdir).metrics, summary)


def _labelled_summary(
    scores: np.ndarray,
    d: Decisions,
    labelled: np.ndarray,
    labels: np.ndarray,
    applied_on: np.ndarray,
    config: AuditConfig,
) -> dict[str, Any] | None:
    """label_metrics of the labelled images; under "fdr" the applied metrics cover the known-used only
    (the known-not-used are the reference, never decided), the cross-validated F1 rule all of them."""
    if not len(labelled):
        return None
    out = label_metrics(scores, d.used, labelled, labels, config)
    if d.rule == "fdr":
        keep = np.isin(labelled, applied_on)
        if keep.any():
            out["applied"] = metrics.classification_metrics(
                labels[keep], d.used[labelled[keep]], scores[labelled[keep]]
            )
        else:
            out.pop("applied")
    return out


def read_evidence(workdir: Path, reference: bool = False) -> dict[str, list[tuple[str, float]]]:
    """For each real id (or, with reference=True, each reference-set id), its nearest generated ids
    with their similarities (closest first)."""
    pool, generated = load_decoded(workdir)
    wanted = load_reference_mask(workdir) == reference
    data = _load_npz(WorkDir(workdir).scores)
    return {
        image_id: [
            (generated.ids[int(j)], float(s))
            for j, s in zip(data["evidence_idx"][i], data["evidence_sims"][i])
        ]
        for i, image_id in enumerate(pool.ids)
        if wanted[i]
    }


# --- running ----------------------------------------------------------------------------------------

_RUNNERS = {
    "decode": run_decode,
    "pretrain": run_pretrain,
    "embed": run_embed,
    "search": run_search,
    "decide": run_decide,
}


def _pin_config(workdir: Path, config: AuditConfig) -> None:
    """Record the config in the work folder; refuse to mix artifacts of two different configs."""
    path = WorkDir(workdir).config
    if not path.exists():
        atomic_write_json(path, config.to_dict())
    elif AuditConfig.from_dict(json.loads(path.read_text())) != AuditConfig.from_dict(
        json.loads(json.dumps(config.to_dict()))
    ):
        raise ValueError(f"work folder {workdir} holds an audit with another configuration")


def run_stage(
    stage: str, workdir: Path, inputs: AuditInputs, config: AuditConfig, on_progress: Progress = _noop
) -> None:
    """Run one stage unless its artifact already exists; records its wall time in timings.json."""
    if stage not in _RUNNERS:
        raise ValueError(f"unknown stage {stage!r}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _pin_config(workdir, config)
    if stage_done(stage, workdir):
        on_progress(1.0)
        return
    started = time.perf_counter()
    _RUNNERS[stage](workdir, inputs, config, on_progress)
    _record_timing(workdir, stage, time.perf_counter() - started)


def read_outcome(workdir: Path) -> AuditOutcome:
    """Results, metrics and rejected files of a finished work folder."""
    from models.results import read_results_csv

    workdir = Path(workdir)
    folder = WorkDir(workdir)
    outcome_metrics = json.loads(folder.metrics.read_text())
    timings_path = folder.timings
    outcome_metrics["timings"] = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    reference_csv = folder.reference_csv
    return AuditOutcome(
        workdir=workdir,
        rows=read_results_csv(folder.results_csv),
        metrics=outcome_metrics,
        rejected=json.loads(folder.rejected.read_text()),
        reference_rows=read_results_csv(reference_csv) if reference_csv.exists() else [],
    )


def run_audit(
    inputs: AuditInputs,
    config: AuditConfig,
    workdir: Path,
    on_progress: Callable[[str, float], None] | None = None,
) -> AuditOutcome:
    """Run every stage in this process and return the outcome."""
    method_for(config)  # fail fast on an unknown method
    for stage in STAGES:
        run_stage(stage, workdir, inputs, config, _named(on_progress, stage) if on_progress else _noop)
    return read_outcome(workdir)


def overall_progress(stage: str, fraction: float) -> float:
    """Overall progress 0-100 from the current stage and its own fraction."""
    done = sum(STAGE_WEIGHTS[s] for s in STAGES[: STAGES.index(stage)])
    return round(100.0 * (done + STAGE_WEIGHTS[stage] * min(max(fraction, 0.0), 1.0)), 1)
