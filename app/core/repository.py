"""Every database query of the service and the workers, in one place."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Select, delete, func, insert, or_, select, tuple_, update
from sqlalchemy.orm import Session, defer

from app.core.tables import (
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

# --- tenant listings (newest first, keyset pagination: app/services/listing.py) -------------------


@dataclass(frozen=True)
class Window:
    """Which rows of a tenant's listing to read: created_at in [created_after, created_before), strictly
    after `after` (the (created_at, id) of the last row already seen) in the order (created_at, id)
    descending, at most `limit` + 1 of them (the extra row says that another page exists)."""

    tenant: str
    created_after: datetime | None = None
    created_before: datetime | None = None
    after: tuple[datetime, uuid.UUID] | None = None
    limit: int = 50


SelectT = TypeVar("SelectT", bound=Select)  # type: ignore[type-arg]


def _listing(stmt: SelectT, model: type[Dataset | Audit | Encoder], window: Window) -> SelectT:
    """`stmt` limited to the window's tenant, time range and position, in the order of the model's
    (tenant, created_at, id) index (migration 0006)."""
    stmt = stmt.where(model.tenant == window.tenant)
    if window.created_after is not None:
        stmt = stmt.where(model.created_at >= window.created_after)
    if window.created_before is not None:
        stmt = stmt.where(model.created_at < window.created_before)
    if window.after is not None:
        stmt = stmt.where(tuple_(model.created_at, model.id) < tuple_(*window.after))
    return stmt.order_by(model.created_at.desc(), model.id.desc()).limit(window.limit + 1)


def list_datasets(
    session: Session, window: Window, role: str | None = None
) -> list[tuple[Dataset, int]]:
    """A page of the tenant's datasets with the number of files each rejected. The rejected lists are
    not read (one can hold an entry per uploaded file): the page's memory stays bounded."""
    postgres = session.get_bind().dialect.name == "postgresql"
    length = func.jsonb_array_length if postgres else func.json_array_length
    stmt = select(Dataset, func.coalesce(length(Dataset.rejected), 0)).options(defer(Dataset.rejected))
    if role is not None:
        stmt = stmt.where(Dataset.role == role)
    return [(dataset, int(count)) for dataset, count in session.execute(_listing(stmt, Dataset, window))]


def list_audits(session: Session, window: Window, status: str | None = None) -> list[Audit]:
    """A page of the tenant's audits (optionally in one status)."""
    stmt = select(Audit)
    if status is not None:
        stmt = stmt.where(Audit.status == status)
    return list(session.scalars(_listing(stmt, Audit, window)))


def list_encoders(session: Session, window: Window, status: str | None = None) -> list[Encoder]:
    """A page of the tenant's registered encoders (optionally in one status)."""
    stmt = select(Encoder)
    if status is not None:
        stmt = stmt.where(Encoder.status == status)
    return list(session.scalars(_listing(stmt, Encoder, window)))


# --- datasets ---------------------------------------------------------------------------------------


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


def unfinished_encoders(session: Session) -> list[uuid.UUID]:
    """Encoder jobs left queued or running, oldest first (the embedded runner resumes them)."""
    stmt = select(Encoder.id).where(Encoder.status.in_(ACTIVE_STATUSES)).order_by(Encoder.created_at)
    return list(session.scalars(stmt))
