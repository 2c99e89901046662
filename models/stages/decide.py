"""Stage 5, decide: scores, calibrated or uncalibrated decisions, results.csv and metrics.json."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthaudit.models import decide, metrics
from synthaudit.models.config import AuditConfig
from synthaudit.models.decide import choose_threshold, label_metrics
from synthaudit.models.methods import ScoreInputs, ScoreOutput, resolve_method_name
from synthaudit.models.reference_overlap import read_overlap
from synthaudit.models.results import ResultRow, write_results_csv
from synthaudit.models.stages.common import AuditInputs, Progress, _load_npz, method_for
from synthaudit.models.stages.decode import load_decoded, load_reference_mask
from synthaudit.models.stages.register import lift_scores, read_registration, registered_copies
from synthaudit.models.stages.search import load_neighbours, read_alignment
from synthaudit.models.workdir import (
    WorkDir,
    atomic_save_npz,
    atomic_write_json,
)


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


def leakage_verdict(leakage: dict[str, Any], check: dict[str, Any] | None) -> dict[str, Any]:
    """The leakage test's record with its verdict: `detected` / `not_detected`, or `inconclusive` when the
    reference check failed (then no p-value, flag count or bound is kept as a finding: all null). Also says
    whether the reference is too small for BH to flag anything and what size would be needed."""
    from synthaudit.models.calibration import min_reference_size

    m, n, fdr = int(leakage["n_candidates"]), int(leakage["n_reference"]), float(leakage["fdr"])
    out = {
        **leakage,
        "min_reference_size": min_reference_size(fdr, m, m),
        "reference_too_small": bool(1.0 / (n + 1.0) > fdr),
        "reason": None,
    }
    if check is not None and check.get("passed") is False:
        for key in INCONCLUSIVE_NULLS:
            out[key] = None
        return {**out, "verdict": "inconclusive", "detected": None, "reason": "reference_check_failed"}
    return {**out, "verdict": "detected" if out["detected"] else "not_detected"}


INCONCLUSIVE_NULLS = (
    "p_value",
    "statistic",
    "n_flagged",
    "used_count_lower_bound",
    "used_share_estimate",
    "used_share_ci",
)


def decide_images(
    pool_scores: np.ndarray,
    from_reference: np.ndarray,
    labelled: np.ndarray,
    labels: np.ndarray,
    config: AuditConfig,
    check: dict[str, Any] | None = None,
) -> Decisions:
    """Decisions, p-values and the leakage test for the real images (the pool minus the reference set).

    The reference = reference-set images + real images labelled used=0; the candidates = the other
    real images (known-used ones included: they measure power). `check` is the reference check's record
    (models/reference_check.py): when it failed, the verdict is inconclusive, no p-value is offered and
    the images are decided as in an uncalibrated audit.
    """
    from synthaudit.models import calibration

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
        leakage = leakage_verdict(result.leakage, check)
        if leakage["verdict"] != "inconclusive":
            p_values[candidates[:n_real]], q_values[candidates[:n_real]] = result.p_values, result.q_values
    calibrated = leakage is not None and leakage["verdict"] != "inconclusive"
    inconclusive = leakage is not None and not calibrated
    rule = "prior" if inconclusive and config.decision == "fdr" else decision_rule_for(config, calibrated)
    if rule == "fdr":
        used = (np.nan_to_num(q_values, nan=1.0) <= config.fdr).astype(np.int8)
        threshold = _fdr_threshold(scores, used.astype(bool))
    else:
        threshold, rule = choose_threshold(scores, labelled, labels, config)
        used = decide.apply_threshold(scores, threshold)
    return Decisions(used, threshold, rule, p_values, q_values, leakage)


def run_reference_check(
    workdir: Path, inputs: AuditInputs, pool_images: np.ndarray, is_reference: np.ndarray, config: AuditConfig
) -> dict[str, Any] | None:
    """The blind reference check (models/reference_check.py) of a calibrated audit: None without a
    reference or without candidates; writes the blind scores for the report."""
    from synthaudit.models.reference_check import check_reference

    if not is_reference.any() or is_reference.all():
        return None
    result, blind = check_reference(
        pool_images, is_reference, groups=_pool_groups(inputs, workdir), seed=config.seed
    )
    if blind is not None:
        atomic_save_npz(
            WorkDir(workdir).reference_check, {"blind_scores": blind, "is_reference": is_reference}
        )
    return result.to_dict()


def _pool_groups(inputs: AuditInputs, workdir: Path) -> list[str | None] | None:
    """Known group (DICOM patient) per image of the real pool, or None when no image has one."""
    from synthaudit.models.groups import read_groups

    pool, _ = load_decoded(workdir)
    from_reference = load_reference_mask(workdir)
    real = read_groups(inputs.real) if Path(inputs.real).is_dir() else {}
    ref = read_groups(inputs.reference) if inputs.reference and Path(inputs.reference).is_dir() else {}
    out: list[str | None] = []
    for image_id, is_ref in zip(pool.ids, from_reference.tolist(), strict=True):
        keys = (ref if is_ref else real).get(image_id)
        out.append(keys.patient if keys is not None else None)
    return out if any(out) else None


def _power(decisions: Decisions, labelled: np.ndarray, labels: np.ndarray) -> dict[str, Any] | None:
    """Recall of the known-used images at the audit's decisions (the power of a calibrated audit)."""
    known_used = labelled[labels == 1]
    if decisions.leakage is None or decisions.leakage["verdict"] == "inconclusive" or known_used.size == 0:
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
    registration = read_registration(workdir)
    scores = lift_scores(output.scores, registration)
    n_real = int((~from_reference).sum())
    labelled, labels = _labelled_positions(pool.ids[:n_real], inputs.labels)
    is_reference = from_reference.copy()
    is_reference[labelled[labels == 0]] = True
    check = run_reference_check(workdir, inputs, pool.images, is_reference, config)
    d = decide_images(scores, from_reference, labelled, labels, config, check)
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
        "calibrated": d.leakage is not None and d.leakage["verdict"] != "inconclusive",
        "fdr": config.fdr if d.leakage is not None else None,
        "reference_check": check,
        "reference_overlap": read_overlap(workdir) if from_reference.any() else None,
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
        "registered_copies": registered_copies(registration, pool.ids, generated.ids, n_real),
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
