"""Patients of an audit: pseudonymous group keys of its real images, aggregation rule, patient labels."""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from synthaudit.app.core import repository as repo
from synthaudit.app.core.storage import Storage
from synthaudit.app.core.tables import Audit
from synthaudit.app.problems import Conflict
from synthaudit.app.services.audit_access import finished_audit

if TYPE_CHECKING:
    from synthaudit.models.groups import PatientResult


@dataclass
class Grouping:
    """How an audit's real images group into patients, and the labels known for them."""

    aggregation: str = "any"
    groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # image id -> {patient, study, series}
    image_labels: dict[str, int] = field(default_factory=dict)
    patient_labels: dict[str, int] = field(default_factory=dict)


def dataset_groups(session: Session, dataset_id: uuid.UUID | None) -> dict[str, dict[str, Any]]:
    """Image id -> pseudonymous keys, for the images of a dataset that carry a patient key."""
    if dataset_id is None:
        return {}
    rows = repo.image_groups(session, dataset_id)
    return {name: {"patient": p, "study": st, "series": se} for name, p, st, se in rows}


def audit_grouping(session: Session, audit: Audit, aggregation: str | None = None) -> Grouping:
    """The grouping of an audit's real images (aggregation: the query's choice, else the audit's)."""
    return Grouping(
        aggregation=aggregation or audit.patient_aggregation or "any",
        groups=dataset_groups(session, audit.real_dataset_id),
        image_labels=dict(audit.labels or {}),
        patient_labels=dict(audit.patient_labels or {}),
    )


REFERENCE_PREFIX = "\0reference/"  # keys reference-set images apart from real ones (NUL is in no file name)


@dataclass
class ScoredImages:
    """The images patients are aggregated over: real images, then (calibrated audits) the reference set's."""

    ids: list[str]
    scores: list[float]
    used: list[int]
    roles: list[str]
    groups: dict[str, dict[str, Any]]


def scored_images(session: Session, audit: Audit, grouping: Grouping, calibrated: bool) -> ScoredImages:
    """The audit's result rows keyed for aggregate_patients: a reference-set image's id and group key get
    REFERENCE_PREFIX (its name may equal a real image's; a patient in both sets is still one patient)."""
    rows = repo.get_results(session, audit.id, source=None if calibrated else "real")
    groups = dict(grouping.groups)
    if calibrated and audit.reference_dataset_id is not None:
        reference = dataset_groups(session, audit.reference_dataset_id)
        groups.update({REFERENCE_PREFIX + name: keys for name, keys in reference.items()})
    return ScoredImages(
        ids=[r.image_name if r.source == "real" else REFERENCE_PREFIX + r.image_name for r in rows],
        scores=[r.score for r in rows],
        used=[r.used for r in rows],
        roles=[r.role or "candidate" for r in rows],
        groups=groups,
    )


def patients_calibrated(summary: dict[str, Any]) -> bool:
    """Whether patients get p-values: a calibrated audit whose verdict is not inconclusive (a failed
    reference check leaves every p-value, image or patient, uncalibrated)."""
    leak = summary.get("leakage") or {}
    return (
        bool(summary.get("calibrated"))
        and summary.get("fdr") is not None
        and leak.get("verdict") != "inconclusive"
    )


def audit_patients(
    images: ScoredImages, aggregation: str, summary: dict[str, Any], threshold: float
) -> list[PatientResult]:
    """Per-patient rows. Calibrated audits: each candidate patient's aggregated score gets a conformal
    p-value against the reference patients' (all of whose images are known not used) and a BH q-value;
    under the fdr rule BH at the audit's FDR decides `used`, under the others the image decisions do.
    Uncalibrated and inconclusive audits: no patient p-value, the image decisions decide."""
    from synthaudit.models.groups import aggregate_patients, calibrate_patients, reference_patients

    patients = aggregate_patients(
        images.ids, images.scores, images.used, images.groups, threshold, aggregation
    )
    if not patients_calibrated(summary):
        return patients
    reference = reference_patients(images.ids, images.roles, images.groups)
    tested = calibrate_patients(patients, reference, float(summary["fdr"]))
    if summary.get("decision_rule") == "fdr":
        return tested
    decided = {r.patient: r.used for r in patients}
    return [replace(r, used=decided[r.patient]) for r in tested]


def write_patients(
    session: Session,
    storage: Storage,
    audit_id: uuid.UUID,
    aggregation: str | None,
    *,
    tenant: str,
) -> Path:
    """patients.csv of a succeeded audit in a temporary file the caller deletes."""
    from synthaudit.models.groups import write_patients_csv

    audit = finished_audit(session, audit_id, tenant)
    grouping = audit_grouping(session, audit, aggregation)
    if not grouping.groups:
        raise Conflict(
            "the audit's real images carry no patient information (DICOM PatientID); results.csv has the images"
        )
    metrics = repo.get_metrics(session, audit_id)
    summary = (metrics.metrics if metrics is not None else None) or {}
    threshold = float(metrics.threshold) if metrics is not None else float("nan")
    images = scored_images(session, audit, grouping, patients_calibrated(summary))
    patients = audit_patients(images, grouping.aggregation, summary, threshold)
    storage.ensure()
    fd, name = tempfile.mkstemp(dir=storage.root / "tmp", prefix="patients-", suffix=".csv")
    os.close(fd)
    return write_patients_csv(patients, name)
