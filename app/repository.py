"""Every database query of the service and the workers, in one place."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, delete, func, insert, or_, select, update
from sqlalchemy.orm import Session

from app.tables import (
    ACTIVE_STATUSES,
    DEFAULT_TENANT,
    Audit,
    AuditMetrics,
    AuditResult,
    Dataset,
    Encoder,
    Image,
    utcnow,
)

# --- datasets ---------------------------------------------------------------------------------------


def add_dataset(session: Session, dataset: Dataset, images: Sequence[dict[str, Any]]) -> None:
    """Insert a dataset and its image rows (bulk)."""
    session.add(dataset)
    session.flush()
    if images:
        session.execute(
            insert(Image), [{**row, "dataset_id": dataset.id, "role": dataset.role} for row in images]
        )


def get_dataset(session: Session, dataset_id: uuid.UUID, tenant: str | None = None) -> Dataset | None:
    """The dataset; None when missing or (with a tenant) owned by another tenant."""
    dataset = session.get(Dataset, dataset_id)
    if dataset is None or (tenant is not None and dataset.tenant != tenant):
        return None
    return dataset


def list_images(session: Session, dataset_id: uuid.UUID, offset: int, limit: int) -> list[Image]:
    stmt = (
        select(Image).where(Image.dataset_id == dataset_id).order_by(Image.name).offset(offset).limit(limit)
    )
    return list(session.scalars(stmt))


def image_names(session: Session, dataset_id: uuid.UUID) -> set[str]:
    return set(session.scalars(select(Image.name).where(Image.dataset_id == dataset_id)))


def _uses(dataset_id: uuid.UUID) -> ColumnElement[bool]:
    """The audits that read a dataset: as their real, generated or reference set."""
    return or_(
        Audit.real_dataset_id == dataset_id,
        Audit.generated_dataset_id == dataset_id,
        Audit.reference_dataset_id == dataset_id,
    )


def count_active_audits_using(session: Session, dataset_id: uuid.UUID) -> int:
    stmt = select(func.count(Audit.id)).where(_uses(dataset_id), Audit.status.in_(ACTIVE_STATUSES))
    return int(session.scalar(stmt) or 0)


def delete_dataset(session: Session, dataset_id: uuid.UUID) -> None:
    session.execute(delete(Image).where(Image.dataset_id == dataset_id))
    session.execute(delete(Dataset).where(Dataset.id == dataset_id))


# --- audits -----------------------------------------------------------------------------------------


def add_audit(session: Session, audit: Audit) -> None:
    session.add(audit)
    session.flush()


def get_audit(session: Session, audit_id: uuid.UUID, tenant: str | None = None) -> Audit | None:
    """The audit; None when missing or (with a tenant) owned by another tenant."""
    audit = session.get(Audit, audit_id)
    if audit is None or (tenant is not None and audit.tenant != tenant):
        return None
    return audit


def get_audit_by_idempotency_key(session: Session, key: str, tenant: str = DEFAULT_TENANT) -> Audit | None:
    return session.scalar(select(Audit).where(Audit.idempotency_key == key, Audit.tenant == tenant))


def audits_in_status(session: Session, statuses: Sequence[str]) -> list[uuid.UUID]:
    stmt = select(Audit.id).where(Audit.status.in_(statuses)).order_by(Audit.created_at)
    return list(session.scalars(stmt))


def cancel_audit(session: Session, audit_id: uuid.UUID) -> bool:
    """Mark a queued or running audit cancelled; False when it had already ended."""
    now = utcnow()
    result = session.execute(
        update(Audit)
        .where(Audit.id == audit_id, Audit.status.in_(ACTIVE_STATUSES))
        .values(status="cancelled", finished_at=now, updated_at=now)
    )
    return result.rowcount > 0  # type: ignore[attr-defined]


def delete_audit(session: Session, audit_id: uuid.UUID) -> None:
    session.execute(delete(AuditResult).where(AuditResult.audit_id == audit_id))
    session.execute(delete(AuditMetrics).where(AuditMetrics.audit_id == audit_id))
    session.execute(delete(Audit).where(Audit.id == audit_id))


def get_results(session: Session, audit_id: uuid.UUID, source: str | None = None) -> list[AuditResult]:
    """The audit's result rows in position order; `source` 'real' (results.csv) or 'reference' (the
    reference set's images) keeps only those."""
    stmt = select(AuditResult).where(AuditResult.audit_id == audit_id)
    if source is not None:
        stmt = stmt.where(AuditResult.source == source)
    return list(session.scalars(stmt.order_by(AuditResult.position)))


def get_metrics(session: Session, audit_id: uuid.UUID) -> AuditMetrics | None:
    return session.get(AuditMetrics, audit_id)


# --- worker state transitions (each returns False when the audit is gone or no longer active) ------


def start_stage(session: Session, audit_id: uuid.UUID, stage: str, progress: float) -> bool:
    """queued/running → running at `stage`; sets started_at on the first stage."""
    now = utcnow()
    audit = session.get(Audit, audit_id, with_for_update=session.bind.dialect.name != "sqlite")  # type: ignore[union-attr]
    if audit is None or audit.status not in ACTIVE_STATUSES:
        return False
    audit.status, audit.stage, audit.progress, audit.updated_at = "running", stage, progress, now
    audit.started_at = audit.started_at or now
    audit.heartbeat_at = now
    return True


def set_progress(session: Session, audit_id: uuid.UUID, stage: str, progress: float) -> bool:
    result = session.execute(
        update(Audit)
        .where(Audit.id == audit_id, Audit.status == "running")
        .values(stage=stage, progress=progress, updated_at=utcnow(), heartbeat_at=utcnow())
    )
    return result.rowcount > 0  # type: ignore[attr-defined]


def record_stage_timing(session: Session, audit_id: uuid.UUID, stage: str, seconds: float) -> None:
    audit = session.get(Audit, audit_id)
    if audit is not None:
        audit.stage_timings = {**(audit.stage_timings or {}), stage: round(seconds, 3)}


def fail_audit(session: Session, audit_id: uuid.UUID, error: str) -> bool:
    now = utcnow()
    result = session.execute(
        update(Audit)
        .where(Audit.id == audit_id, Audit.status.in_(ACTIVE_STATUSES))
        .values(status="failed", error=error, finished_at=now, updated_at=now)
    )
    return result.rowcount > 0  # type: ignore[attr-defined]


def store_outcome(
    session: Session,
    audit_id: uuid.UUID,
    results: Sequence[dict[str, Any]],
    metrics: dict[str, Any],
) -> bool:
    """Replace the audit's result and metrics rows and mark it succeeded (one transaction)."""
    now = utcnow()
    done = session.execute(
        update(Audit)
        .where(Audit.id == audit_id, Audit.status == "running")
        .values(
            status="succeeded", stage="decide", progress=100.0, finished_at=now, updated_at=now, error=None
        )
    )
    if done.rowcount == 0:  # type: ignore[attr-defined]
        return False
    session.execute(delete(AuditResult).where(AuditResult.audit_id == audit_id))
    session.execute(delete(AuditMetrics).where(AuditMetrics.audit_id == audit_id))
    if results:
        session.execute(insert(AuditResult), [{**row, "audit_id": audit_id} for row in results])
    session.add(AuditMetrics(audit_id=audit_id, **metrics))
    return True


# --- retention and data protection ---------------------------------------------------------------


def expired_audits(session: Session, before: datetime) -> list[uuid.UUID]:
    """Finished audits created before `before` whose work folder was not purged yet."""
    stmt = select(Audit.id).where(
        Audit.created_at < before, Audit.status.not_in(ACTIVE_STATUSES), Audit.purged_at.is_(None)
    )
    return list(session.scalars(stmt))


def expired_datasets(session: Session, before: datetime) -> list[uuid.UUID]:
    """Datasets created before `before`, not purged yet, that no queued or running audit uses (as its
    real, generated or reference set)."""
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
        Dataset.created_at < before, Dataset.purged_at.is_(None), Dataset.id.not_in(in_use)
    )
    return list(session.scalars(stmt))


def expired_encoders(session: Session, before: datetime) -> list[uuid.UUID]:
    """Encoders created before `before`, not purged yet, neither training nor used by an active audit."""
    in_use = select(Audit.encoder_id).where(
        Audit.status.in_(ACTIVE_STATUSES), Audit.encoder_id.is_not(None)
    )
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


def audits_using(session: Session, dataset_id: uuid.UUID) -> list[uuid.UUID]:
    """Every audit that read the dataset (their work folders hold decoded copies of its images)."""
    return list(session.scalars(select(Audit.id).where(_uses(dataset_id))))
