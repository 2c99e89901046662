"""The report's data: what a finished work folder holds, read for the report, and the per-patient results.

Pure: reads `images.npz` (the real pool: real images, then any reference-set images), `results.csv`,
`reference.csv`, `metrics.json`, `config.json`, `rejected.json`, the reference check's blind scores
(`reference_check.npz`, when the check ran) and the real images' nearest-neighbour evidence
(`models.stages.read_evidence`) and registered evidence (`registration.npz`); labels and patient groups are
passed in.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from synthaudit.models.groups import (
    GroupKeys,
    PatientResult,
    aggregate_patients,
    calibrate_patients,
    reference_patients,
)
from synthaudit.models.workdir import WorkDir


def _read_json(path: Path, default: Any = None) -> Any:
    """A JSON file's content, default when it does not exist."""
    return json.loads(path.read_text()) if path.exists() else default


def _nan_if_none(values: list[float | None]) -> np.ndarray:
    """Floats with None as nan."""
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def load_report_data(workdir: str | Path) -> dict[str, Any]:
    """Everything the report shows, read from a finished work folder. `real_*` cover the real images
    only (not the reference set, whose ids may even repeat real ones); `reference_set_*` the reference
    set's images (known not used, scored like the real ones)."""
    from synthaudit.models.results import read_results_csv
    from synthaudit.models.stages import load_decoded, load_reference_mask, read_evidence

    workdir = Path(workdir)
    folder = WorkDir(workdir)
    pool, generated = load_decoded(workdir)
    real_pos = np.flatnonzero(~load_reference_mask(workdir))
    real_ids = [pool.ids[i] for i in real_pos]
    rows = {r.id: r for r in read_results_csv(folder.results_csv)}
    missing = [i for i in real_ids if i not in rows]
    if missing:
        raise ValueError(f"results.csv lacks {len(missing)} real image(s), e.g. {missing[0]!r}")
    real_rows = [rows[i] for i in real_ids]
    reference_csv = folder.reference_csv
    reference_rows = read_results_csv(reference_csv) if reference_csv.exists() else []
    return {
        "real_ids": real_ids,
        "real": pool.images[real_pos],
        "pool": pool.images,  # real images, then the reference set's (the blind scores' order)
        "generated_ids": generated.ids,
        "generated": generated.images,
        "scores": np.array([r.score for r in real_rows], dtype=np.float64),
        "used": np.array([r.used for r in real_rows], dtype=np.int64),
        "p_values": _nan_if_none([r.p_value for r in real_rows]),
        "q_values": _nan_if_none([r.q_value for r in real_rows]),
        "roles": [r.role for r in real_rows],
        "reference_set_ids": [r.id for r in reference_rows],
        "reference_set_scores": np.array([r.score for r in reference_rows], dtype=np.float64),
        "evidence": read_evidence(workdir, reference=False),
        "metrics": _read_json(folder.metrics, {}),
        "config": _read_json(folder.config, {}),
        "rejected": _read_json(folder.rejected, {}),
        "blind": _read_blind_scores(workdir, len(pool.ids)),
        "registration": _read_registration(workdir, real_pos),
    }


def _read_registration(workdir: Path, real_pos: np.ndarray) -> dict[str, np.ndarray] | None:
    """The registered evidence of the real images (models/stages/register.py), in the real images' order;
    None where the audit did not register."""
    from synthaudit.models.stages.register import FIELDS, read_registration

    evidence = read_registration(workdir)
    if evidence is None:
        return None
    out = {f: np.asarray(getattr(evidence, f))[real_pos] for f in FIELDS}
    out["strong"] = evidence.strong()[real_pos]
    return out


def _read_blind_scores(workdir: Path, n_pool: int) -> dict[str, np.ndarray] | None:
    """The reference check's blind scores over the real pool (`blind_scores`, `is_reference`); None when
    the check did not run or wrote nothing, or when the file does not match the pool (no evidence panel)."""
    path = WorkDir(workdir).reference_check
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            scores = np.asarray(npz["blind_scores"], dtype=np.float64)
            is_reference = np.asarray(npz["is_reference"], dtype=bool)
    except (OSError, KeyError, ValueError):
        return None
    if scores.shape != (n_pool,) or is_reference.shape != (n_pool,):
        return None
    return {"blind_scores": scores, "is_reference": is_reference}


def leakage_of(data: dict[str, Any]) -> dict[str, Any] | None:
    """The leakage test of a calibrated audit; None when it is uncalibrated or inconclusive (the
    reference check failed: no p-value is offered as calibrated then)."""
    m = data["metrics"]
    leak = m.get("leakage")
    if not leak or leak.get("verdict") == "inconclusive":
        return None
    return leak if m.get("calibrated", True) else None


def inconclusive_of(data: dict[str, Any]) -> dict[str, Any] | None:
    """The leakage record of an audit whose verdict is inconclusive (the reference check failed); else None."""
    leak = data["metrics"].get("leakage")
    return leak if leak and leak.get("verdict") == "inconclusive" else None


def reference_check_of(data: dict[str, Any]) -> dict[str, Any] | None:
    """The reference check's record (models/reference_check.py); None without a reference."""
    check = data["metrics"].get("reference_check")
    return check if isinstance(check, dict) else None


def target_fdr(data: dict[str, Any]) -> float:
    """The audit's target false discovery rate (0.1 when metrics.json names none)."""
    leak = data["metrics"].get("leakage") or {}
    return float(data["metrics"].get("fdr") or leak.get("fdr") or 0.1)


def flagged_mask(data: dict[str, Any]) -> np.ndarray:
    """The candidates Benjamini-Hochberg flags: the decisions under the fdr rule (exactly the engine's),
    q <= fdr under the other rules of a calibrated audit; none when uncalibrated."""
    if leakage_of(data) is None:
        return np.zeros(len(data["real_ids"]), dtype=bool)
    if data["metrics"].get("decision_rule") == "fdr":
        return candidate_mask(data) & (data["used"] == 1)
    return np.nan_to_num(data["q_values"], nan=1.0) <= target_fdr(data)


def candidate_mask(data: dict[str, Any]) -> np.ndarray:
    """Which real images are candidates (all but those labelled not used)."""
    return np.array([role != "reference" for role in data["roles"]], dtype=bool)


def reference_scores(data: dict[str, Any]) -> np.ndarray:
    """Scores of every reference image: real images labelled not used, then the reference set."""
    labelled_reference = data["scores"][~candidate_mask(data)]
    return np.concatenate([labelled_reference, data["reference_set_scores"]])


def patient_results(
    data: dict[str, Any],
    groups: Mapping[str, GroupKeys | Mapping[str, str | None]],
    reference_groups: Mapping[str, GroupKeys | Mapping[str, str | None]] | None,
    aggregation: str,
) -> list[PatientResult]:
    """Per-patient results (as patients.csv); when the audit is calibrated, with patient-level p-values
    and q-values against the reference patients (all of whose images are reference images: real images
    labelled not used, and reference-set images whose groups are given in reference_groups). Reference-set
    images without groups are left out: then only labelled-not-used patients can be the reference. Under the
    fdr rule BH across patients decides `used`; under the other rules the image decisions do. An
    inconclusive audit (the reference check failed) calibrates no patient: no p-value, no flag."""
    ids = list(data["real_ids"])
    scores = list(data["scores"])
    used = list(data["used"])
    roles = list(data["roles"])
    keys: dict[str, Any] = {i: groups[i] for i in ids if i in groups}
    for image_id, score in zip(data["reference_set_ids"], data["reference_set_scores"], strict=True):
        if reference_groups and image_id in reference_groups:
            internal = f"\x00reference/{image_id}"  # reference-set ids may repeat real ones
            keys[internal] = reference_groups[image_id]
            ids.append(internal)
            scores.append(score)
            used.append(0)
            roles.append("reference")
    threshold = float(data["metrics"].get("threshold", math.nan))
    patients = aggregate_patients(ids, np.array(scores), np.array(used), keys, threshold, aggregation)
    leak = leakage_of(data)
    if leak is None:
        return patients
    fdr = target_fdr(data)
    tested = calibrate_patients(patients, reference_patients(ids, roles, keys), fdr)
    if data["metrics"].get("decision_rule") == "fdr":
        return tested
    decided = {
        r.patient: r.used for r in patients
    }  # other rules: the image decisions decide, as patients.csv
    return [replace(r, used=decided[r.patient]) for r in tested]


def patient_of(keys: GroupKeys | Mapping[str, str | None]) -> str | None:
    """The patient key of an image's group keys (a GroupKeys or a mapping), None when it has none."""
    return keys.patient if isinstance(keys, GroupKeys) else keys.get("patient")
