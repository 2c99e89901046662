"""The workers' audit state transitions (each returns False when the audit is gone or no longer active)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import delete, insert, update
from sqlalchemy.orm import Session

from synthaudit.app.core.repository.rows import rows_affected
from synthaudit.app.core.tables import ACTIVE_STATUSES, Audit, AuditMetrics, AuditResult, utcnow


def start_stage(session: Session, audit_id: uuid.UUID, stage: str, progress: float) -> bool:
    """queued/running → running at `stage`; sets started_at on the first stage."""
    now = utcnow()
    locked = session.get_bind().dialect.name != "sqlite"
    audit = session.get(Audit, audit_id, with_for_update=locked)
    if audit is None or audit.status not in ACTIVE_STATUSES:
        return False
    audit.status, audit.stage, audit.progress, audit.updated_at = "running", stage, progress, now
    audit.started_at = audit.started_at or now
    audit.heartbeat_at = now
    return True


def set_progress(session: Session, audit_id: uuid.UUID, stage: str, progress: float) -> bool:
    """A running audit's stage and progress (and its heartbeat)."""
    result = session.execute(
        update(Audit)
        .where(Audit.id == audit_id, Audit.status == "running")
        .values(stage=stage, progress=progress, updated_at=utcnow(), heartbeat_at=utcnow())
    )
    return rows_affected(result) > 0


def record_stage_timing(session: Session, audit_id: uuid.UUID, stage: str, seconds: float) -> None:
    """Add the stage's duration to the audit's timings."""
    audit = session.get(Audit, audit_id)
    if audit is not None:
        audit.stage_timings = {**(audit.stage_timings or {}), stage: round(seconds, 3)}


def fail_audit(session: Session, audit_id: uuid.UUID, error: str) -> bool:
    """queued/running → failed with the error."""
    now = utcnow()
    result = session.execute(
        update(Audit)
        .where(Audit.id == audit_id, Audit.status.in_(ACTIVE_STATUSES))
        .values(status="failed", error=error, finished_at=now, updated_at=now)
    )
    return rows_affected(result) > 0


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
    if rows_affected(done) == 0:
        return False
    session.execute(delete(AuditResult).where(AuditResult.audit_id == audit_id))
    session.execute(delete(AuditMetrics).where(AuditMetrics.audit_id == audit_id))
    if results:
        session.execute(insert(AuditResult), [{**row, "audit_id": audit_id} for row in results])
    session.add(AuditMetrics(audit_id=audit_id, **metrics))
    return True
