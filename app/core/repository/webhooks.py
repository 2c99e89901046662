"""The completion webhook's state on the audit row: claim, renew, record, release (app/core/webhooks.py)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import ColumnElement, and_, or_, select, update
from sqlalchemy.orm import Session

from synthaudit.app.core.repository.rows import rows_affected
from synthaudit.app.core.tables import Audit, utcnow

FINAL_STATUSES = ("succeeded", "failed", "cancelled")


def claim_webhook(session: Session, audit_id: uuid.UUID) -> datetime | None:
    """NULL → sending, only for a finished audit with a webhook: the claim time for exactly one caller."""
    now = utcnow()
    result = session.execute(
        update(Audit)
        .where(
            Audit.id == audit_id,
            Audit.webhook_url.is_not(None),
            Audit.webhook_status.is_(None),
            Audit.status.in_(FINAL_STATUSES),
        )
        .values(webhook_status="sending", webhook_claimed_at=now)
    )
    return now if rows_affected(result) > 0 else None


def renew_webhook_claim(session: Session, audit_id: uuid.UUID, claimed_at: datetime) -> bool:
    """The claim made at `claimed_at` gets a new claim time; False when it is no longer that claim."""
    result = session.execute(
        update(Audit)
        .where(
            Audit.id == audit_id,
            Audit.webhook_status == "sending",
            Audit.webhook_claimed_at == claimed_at,
        )
        .values(webhook_claimed_at=utcnow())
    )
    return rows_affected(result) > 0


def _stalled(cutoff: datetime) -> ColumnElement[bool]:
    """In `sending` without a claim time, or claimed before `cutoff`."""
    return and_(
        Audit.webhook_status == "sending",
        or_(Audit.webhook_claimed_at.is_(None), Audit.webhook_claimed_at < cutoff),
    )


def stalled_webhooks(session: Session, cutoff: datetime) -> list[uuid.UUID]:
    """The audits whose webhook is stalled at `cutoff` (see _stalled)."""
    return list(session.scalars(select(Audit.id).where(_stalled(cutoff))))


def release_stalled_webhook(session: Session, audit_id: uuid.UUID, cutoff: datetime) -> bool:
    """Put a stalled webhook back to NULL; False when another process released it or it was delivered."""
    released = session.execute(
        update(Audit)
        .where(Audit.id == audit_id, _stalled(cutoff))
        .values(webhook_status=None, webhook_claimed_at=None)
    )
    return rows_affected(released) == 1


def record_webhook(session: Session, audit_id: uuid.UUID, delivered: bool, attempts: int) -> None:
    """The delivery's outcome: `delivered` or `failed`, and the number of attempts."""
    session.execute(
        update(Audit)
        .where(Audit.id == audit_id)
        .values(webhook_status="delivered" if delivered else "failed", webhook_attempts=attempts)
    )


def release_webhook_claim(session: Session, audit_id: uuid.UUID) -> None:
    """`sending` without a claim time: the next stalled-webhook sweep takes it at once."""
    session.execute(
        update(Audit)
        .where(Audit.id == audit_id, Audit.webhook_status == "sending")
        .values(webhook_claimed_at=None)
    )
