"""Patients of an audit: pseudonymous group keys of its real images, aggregation rule, patient labels."""

from __future__ import annotations

import os
import tempfile
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app import repository as repo
from app.problems import Conflict
from app.services.storage import Storage
from app.tables import Audit, Image


def group_secret() -> str:
    """GROUP_KEY_SECRET: the key of the patient/study/series pseudonyms."""
    from app.config import get_settings

    return get_settings().group_key_secret


def image_rows(images_dir: Path, images: list[Any], secret: str) -> list[dict[str, Any]]:
    """The `images` rows of an upload, with the pseudonymous patient/study/series keys of DICOM files."""
    from models.groups import keys_from_file

    rows = []
    for image in images:
        keys = keys_from_file(images_dir / image.file_name, secret)
        rows.append(
            {
                "name": image.name,
                "file_name": image.file_name,
                "sha256": image.sha256,
                "size_bytes": image.size_bytes,
                "patient_key": keys.patient if keys else None,
                "study_key": keys.study if keys else None,
                "series_key": keys.series if keys else None,
            }
        )
    return rows


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
    rows = session.execute(
        select(Image.name, Image.patient_key, Image.study_key, Image.series_key).where(
            Image.dataset_id == dataset_id, Image.patient_key.is_not(None)
        )
    ).all()
    return {name: {"patient": p, "study": st, "series": se} for name, p, st, se in rows}


def audit_grouping(session: Session, audit: Audit, aggregation: str | None = None) -> Grouping:
    """The grouping of an audit's real images (aggregation: the query's choice, else the audit's)."""
    return Grouping(
        aggregation=aggregation or audit.patient_aggregation or "any",
        groups=dataset_groups(session, audit.real_dataset_id),
        image_labels=dict(audit.labels or {}),
        patient_labels=dict(audit.patient_labels or {}),
    )


def write_patients(
    session: Session,
    storage: Storage,
    audit_id: uuid.UUID,
    aggregation: str | None,
    tenant: str | None = None,
) -> Path:
    """patients.csv of a succeeded audit in a temporary file the caller deletes."""
    from app.services.audits import _finished
    from models.groups import aggregate_patients, write_patients_csv

    audit = _finished(session, audit_id, tenant)
    grouping = audit_grouping(session, audit, aggregation)
    if not grouping.groups:
        raise Conflict(
            "the audit's real images carry no patient information (DICOM PatientID); results.csv has the images"
        )
    metrics = repo.get_metrics(session, audit_id)
    rows = repo.get_results(session, audit_id)
    patients = aggregate_patients(
        [r.image_name for r in rows],
        [r.score for r in rows],
        [r.used for r in rows],
        grouping.groups,
        float(metrics.threshold) if metrics is not None else float("nan"),
        grouping.aggregation,
    )
    storage.ensure()
    fd, name = tempfile.mkstemp(dir=storage.root / "tmp", prefix="patients-", suffix=".csv")
    os.close(fd)
    return write_patients_csv(patients, name)
