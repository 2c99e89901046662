"""The job counts and stage timings `/metrics` reports (app/observability.py), read at scrape time."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from synthaudit.app.core.tables import Audit, Comparison, Encoder


def audit_counts(session: Session) -> list[tuple[str, int]]:
    """(status, number of audits) per status."""
    stmt = select(Audit.status, func.count()).group_by(Audit.status)
    return [(status, int(n)) for status, n in session.execute(stmt)]


def encoder_counts(session: Session) -> list[tuple[str, int]]:
    """(status, number of encoders) per status."""
    stmt = select(Encoder.status, func.count()).group_by(Encoder.status)
    return [(status, int(n)) for status, n in session.execute(stmt)]


def comparison_counts(session: Session) -> list[tuple[str, int]]:
    """(status, number of comparisons) per status."""
    stmt = select(Comparison.status, func.count()).group_by(Comparison.status)
    return [(status, int(n)) for status, n in session.execute(stmt)]


def webhook_counts(session: Session) -> list[tuple[str | None, int]]:
    """(webhook state, number of audits) over the audits that have a webhook (None: not sent yet)."""
    stmt = select(Audit.webhook_status, func.count()).where(Audit.webhook_url.is_not(None))
    return [(state, int(n)) for state, n in session.execute(stmt.group_by(Audit.webhook_status))]


def recent_stage_timings(session: Session, limit: int = 1000) -> list[dict[str, Any] | None]:
    """The stage timings of the last `limit` succeeded audits, newest first."""
    stmt = (
        select(Audit.stage_timings)
        .where(Audit.status == "succeeded")
        .order_by(Audit.finished_at.desc())
        .limit(limit)
    )
    return list(session.scalars(stmt))
