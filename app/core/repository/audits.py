"""Queries of audits, their result and metrics rows, and the per-tenant creation lock."""

from __future__ import annotations

import uuid
from collections.abc import Sequence

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session

from synthaudit.app.core.repository.listing import Window, in_window
from synthaudit.app.core.repository.rows import rows_affected
from synthaudit.app.core.tables import (
    ACTIVE_STATUSES,
    DEFAULT_TENANT,
    Audit,
    AuditMetrics,
    AuditResult,
    utcnow,
)


def list_audits(session: Session, window: Window, status: str | None = None) -> list[Audit]:
    """A page of the tenant's audits (optionally in one status)."""
    stmt = select(Audit)
    if status is not None:
        stmt = stmt.where(Audit.status == status)
    return list(session.scalars(in_window(stmt, Audit, window)))


def add_audit(session: Session, audit: Audit) -> None:
    """Insert the audit row (flushed: its id and defaults are set)."""
    session.add(audit)
    session.flush()


def get_audit(session: Session, audit_id: uuid.UUID, tenant: str | None = None) -> Audit | None:
    """The audit; None when missing or (with a tenant) owned by another tenant."""
    audit = session.get(Audit, audit_id)
    if audit is None or (tenant is not None and audit.tenant != tenant):
        return None
    return audit


def reread_audit(session: Session, audit: Audit) -> None:
    """Load the audit's row again (after statements that changed it behind the ORM's back)."""
    session.refresh(audit)


def get_audit_by_idempotency_key(session: Session, key: str, tenant: str = DEFAULT_TENANT) -> Audit | None:
    """The tenant's audit created with this Idempotency-Key, if any."""
    return session.scalar(select(Audit).where(Audit.idempotency_key == key, Audit.tenant == tenant))


def lock_audit_creation(session: Session, tenant: str) -> None:
    """Postgres: serialise the tenant's audit creations across API processes until the transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"audits:{tenant}"})


def count_active_audits(session: Session, tenant: str) -> int:
    """The tenant's queued or running audits."""
    active = Audit.status.in_(ACTIVE_STATUSES)
    stmt = select(func.count()).select_from(Audit).where(Audit.tenant == tenant, active)
    return int(session.scalar(stmt) or 0)


def audits_in_status(session: Session, statuses: Sequence[str]) -> list[uuid.UUID]:
    """Audits in one of the statuses, oldest first."""
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
    return rows_affected(result) > 0


def delete_audit(session: Session, audit_id: uuid.UUID) -> None:
    """Delete the audit's result and metrics rows and its row."""
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
    """The audit's metrics row (written by its decide stage)."""
    return session.get(AuditMetrics, audit_id)
