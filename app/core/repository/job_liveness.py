"""Job liveness: the heartbeats of running audits, encoder and comparison jobs, and the recovery sweep's
claims."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import Row, or_, select, update
from sqlalchemy.orm import Session

from synthaudit.app.core.repository.rows import rows_affected
from synthaudit.app.core.tables import ACTIVE_STATUSES, Audit, Comparison, Encoder, utcnow

JobTable = type[Audit] | type[Encoder] | type[Comparison]
SingleJob = type[Encoder] | type[Comparison]  # one task per job: claimed and beaten by the heartbeat alone


def active_jobs(session: Session, table: JobTable, *columns: Any) -> list[Row[Any]]:
    """(id, status, heartbeat_at, created_at, *columns) of every queued or running row, oldest first."""
    stmt = (
        select(table.id, table.status, table.heartbeat_at, table.created_at, *columns)
        .where(table.status.in_(ACTIVE_STATUSES))
        .order_by(table.created_at)
    )
    return list(session.execute(stmt).all())


def claim_orphaned_audit(
    session: Session, audit_id: uuid.UUID, seen_attempt: int | None, attempt: int
) -> bool:
    """Take an orphaned audit as dispatch `attempt`, unless another sweeper took it or it ended meanwhile."""
    claimed = session.execute(
        update(Audit)
        .where(Audit.id == audit_id, Audit.attempt == seen_attempt, Audit.status.in_(ACTIVE_STATUSES))
        .values(attempt=attempt, heartbeat_at=utcnow())
    )
    return rows_affected(claimed) == 1


def claim_orphaned_encoder(session: Session, encoder_id: uuid.UUID, stale_before: datetime) -> bool:
    """Take an orphaned encoder job whose heartbeat is still older than `stale_before`."""
    return claim_orphaned_job(session, Encoder, encoder_id, stale_before)


def claim_orphaned_job(session: Session, table: SingleJob, job_id: uuid.UUID, stale_before: datetime) -> bool:
    """Take an orphaned one-task job (encoder, comparison) whose heartbeat is still older than `stale_before`."""
    still_stale = or_(table.heartbeat_at.is_(None), table.heartbeat_at < stale_before)
    claimed = session.execute(
        update(table)
        .where(table.id == job_id, still_stale, table.status.in_(ACTIVE_STATUSES))
        .values(heartbeat_at=utcnow())
    )
    return rows_affected(claimed) == 1


def beat_audit(session: Session, audit_id: uuid.UUID, attempt: int | None) -> bool:
    """Refresh a running audit's heartbeat (of this dispatch attempt, when given); False: it stopped."""
    conditions = [Audit.id == audit_id, Audit.status == "running"]
    if attempt is not None:
        conditions.append(Audit.attempt == attempt)
    alive = session.execute(update(Audit).where(*conditions).values(heartbeat_at=utcnow()))
    return rows_affected(alive) > 0


def beat_encoder(session: Session, encoder_id: uuid.UUID) -> bool:
    """Refresh a running encoder job's heartbeat; False: it is no longer running."""
    return beat_job(session, Encoder, encoder_id)


def beat_job(session: Session, table: SingleJob, job_id: uuid.UUID) -> bool:
    """Refresh a running one-task job's heartbeat (encoder, comparison); False: it is no longer running."""
    alive = session.execute(
        update(table).where(table.id == job_id, table.status == "running").values(heartbeat_at=utcnow())
    )
    return rows_affected(alive) > 0
