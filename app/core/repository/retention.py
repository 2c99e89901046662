"""Retention queries: what has expired, and the marks left once its files are gone."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from synthaudit.app.core.repository.comparisons import active_comparison_datasets
from synthaudit.app.core.tables import ACTIVE_STATUSES, Audit, Dataset, Encoder, Image, utcnow


def expired_audits(session: Session, before: datetime) -> list[uuid.UUID]:
    """Finished audits created before `before` whose work folder was not purged yet."""
    stmt = select(Audit.id).where(
        Audit.created_at < before, Audit.status.not_in(ACTIVE_STATUSES), Audit.purged_at.is_(None)
    )
    return list(session.scalars(stmt))


def expired_datasets(session: Session, before: datetime) -> list[uuid.UUID]:
    """Datasets created before `before`, not purged yet, that no queued or running audit or comparison
    uses (as its real, generated or reference set)."""
    active = Audit.status.in_(ACTIVE_STATUSES)
    in_use = (
        select(Audit.real_dataset_id)
        .where(active, Audit.real_dataset_id.is_not(None))
        .union(
            select(Audit.generated_dataset_id).where(active, Audit.generated_dataset_id.is_not(None)),
            select(Audit.reference_dataset_id).where(active, Audit.reference_dataset_id.is_not(None)),
        )
    )
    stmt = select(Dataset.id).where(
        Dataset.created_at < before,
        Dataset.purged_at.is_(None),
        Dataset.id.not_in(in_use),
        Dataset.id.not_in(active_comparison_datasets()),
    )
    return list(session.scalars(stmt))


def expired_encoders(session: Session, before: datetime) -> list[uuid.UUID]:
    """Encoders created before `before`, not purged yet, neither training nor used by an active audit."""
    in_use = select(Audit.encoder_id).where(Audit.status.in_(ACTIVE_STATUSES), Audit.encoder_id.is_not(None))
    stmt = select(Encoder.id).where(
        Encoder.created_at < before,
        Encoder.purged_at.is_(None),
        Encoder.status.not_in(ACTIVE_STATUSES),
        Encoder.id.not_in(in_use),
    )
    return list(session.scalars(stmt))


def mark_encoder_purged(session: Session, encoder_id: uuid.UUID) -> None:
    """The encoder's weights are gone: its row (datasets, data hash, loss) stays as provenance."""
    session.execute(update(Encoder).where(Encoder.id == encoder_id).values(purged_at=utcnow()))


def mark_audit_purged(session: Session, audit_id: uuid.UUID) -> None:
    """The audit's work folder is gone: its results and metrics rows stay."""
    session.execute(update(Audit).where(Audit.id == audit_id).values(purged_at=utcnow()))


def mark_dataset_purged(session: Session, dataset_id: uuid.UUID) -> None:
    """The dataset's images are gone: drop their rows (names, hashes), keep the dataset's summary."""
    session.execute(delete(Image).where(Image.dataset_id == dataset_id))
    session.execute(update(Dataset).where(Dataset.id == dataset_id).values(purged_at=utcnow()))
