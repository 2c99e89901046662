"""Queries of datasets and their image rows."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, or_, select
from sqlalchemy.orm import Session, defer

from synthaudit.app.core.repository.listing import Window, in_window
from synthaudit.app.core.tables import ACTIVE_STATUSES, Audit, Dataset, Image


def list_datasets(session: Session, window: Window, role: str | None = None) -> list[tuple[Dataset, int]]:
    """A page of the tenant's datasets with the number of files each rejected. The rejected lists are
    not read (one can hold an entry per uploaded file): the page's memory stays bounded."""
    postgres = session.get_bind().dialect.name == "postgresql"
    length = func.jsonb_array_length if postgres else func.json_array_length
    stmt = select(Dataset, func.coalesce(length(Dataset.rejected), 0)).options(defer(Dataset.rejected))
    if role is not None:
        stmt = stmt.where(Dataset.role == role)
    return [(dataset, int(count)) for dataset, count in session.execute(in_window(stmt, Dataset, window))]


def add_dataset(session: Session, dataset: Dataset, images: Sequence[dict[str, Any]]) -> None:
    """Insert a dataset and its image rows (bulk)."""
    session.add(dataset)
    session.flush()
    if images:
        session.execute(
            insert(Image), [{**row, "dataset_id": dataset.id, "role": dataset.role} for row in images]
        )


def tenant_stored_bytes(session: Session, tenant: str) -> int:
    """Bytes of uploaded images the tenant holds: its datasets whose files are not purged."""
    stmt = select(func.coalesce(func.sum(Dataset.total_bytes), 0)).where(
        Dataset.tenant == tenant, Dataset.purged_at.is_(None)
    )
    return int(session.scalar(stmt) or 0)


def get_dataset(session: Session, dataset_id: uuid.UUID, tenant: str | None = None) -> Dataset | None:
    """The dataset; None when missing or (with a tenant) owned by another tenant."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or (tenant is not None and dataset.tenant != tenant):
        return None
    return dataset


def list_images(session: Session, dataset_id: uuid.UUID, offset: int, limit: int) -> list[Image]:
    """A page of the dataset's image rows, by image id."""
    stmt = (
        select(Image).where(Image.dataset_id == dataset_id).order_by(Image.name).offset(offset).limit(limit)
    )
    return list(session.scalars(stmt))


def image_names(session: Session, dataset_id: uuid.UUID) -> set[str]:
    """The image ids of a dataset."""
    return set(session.scalars(select(Image.name).where(Image.dataset_id == dataset_id)))


def image_hashes(session: Session, dataset_id: uuid.UUID | None) -> list[tuple[str, str]]:
    """(image id, file sha256) of every image of a dataset, by image id."""
    stmt = select(Image.name, Image.sha256).where(Image.dataset_id == dataset_id).order_by(Image.name)
    return [(name, sha) for name, sha in session.execute(stmt)]


def image_patients(session: Session, dataset_id: uuid.UUID | None) -> list[tuple[str, str | None]]:
    """(image id, pseudonymous patient key or None) of every image of a dataset."""
    stmt = select(Image.name, Image.patient_key).where(Image.dataset_id == dataset_id)
    return [(name, key) for name, key in session.execute(stmt)]


def image_groups(
    session: Session, dataset_id: uuid.UUID
) -> list[tuple[str, str | None, str | None, str | None]]:
    """(image id, patient, study, series keys) of the dataset's images that carry a patient key."""
    stmt = select(Image.name, Image.patient_key, Image.study_key, Image.series_key).where(
        Image.dataset_id == dataset_id, Image.patient_key.is_not(None)
    )
    return [(name, patient, study, series) for name, patient, study, series in session.execute(stmt)]


def _uses(dataset_id: uuid.UUID) -> ColumnElement[bool]:
    """The audits that read a dataset: as their real, generated or reference set."""
    return or_(
        Audit.real_dataset_id == dataset_id,
        Audit.generated_dataset_id == dataset_id,
        Audit.reference_dataset_id == dataset_id,
    )


def count_active_audits_using(session: Session, dataset_id: uuid.UUID) -> int:
    """Queued or running audits that read the dataset."""
    stmt = select(func.count(Audit.id)).where(_uses(dataset_id), Audit.status.in_(ACTIVE_STATUSES))
    return int(session.scalar(stmt) or 0)


def audits_using(session: Session, dataset_id: uuid.UUID) -> list[uuid.UUID]:
    """Every audit that read the dataset (their work folders hold decoded copies of its images)."""
    return list(session.scalars(select(Audit.id).where(_uses(dataset_id))))


def delete_dataset(session: Session, dataset_id: uuid.UUID) -> None:
    """Delete the dataset's image rows and its row."""
    session.execute(delete(Image).where(Image.dataset_id == dataset_id))
    session.execute(delete(Dataset).where(Dataset.id == dataset_id))
