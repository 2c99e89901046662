"""Queries of registered encoders."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from synthaudit.app.core.repository.listing import Window, in_window
from synthaudit.app.core.tables import ACTIVE_STATUSES, Audit, Encoder


def list_encoders(session: Session, window: Window, status: str | None = None) -> list[Encoder]:
    """A page of the tenant's registered encoders (optionally in one status)."""
    stmt = select(Encoder)
    if status is not None:
        stmt = stmt.where(Encoder.status == status)
    return list(session.scalars(in_window(stmt, Encoder, window)))


def add_encoder(session: Session, encoder: Encoder) -> None:
    """Insert the encoder row (flushed: its id and defaults are set)."""
    session.add(encoder)
    session.flush()


def get_encoder(session: Session, encoder_id: uuid.UUID, tenant: str | None = None) -> Encoder | None:
    """The encoder; None when missing or (with a tenant) owned by another tenant."""
    encoder = session.get(Encoder, encoder_id)
    if encoder is None or (tenant is not None and encoder.tenant != tenant):
        return None
    return encoder


def delete_encoder(session: Session, encoder: Encoder) -> None:
    """Delete the encoder's row."""
    session.delete(encoder)
    session.flush()


def count_active_audits_with_encoder(session: Session, encoder_id: uuid.UUID) -> int:
    """Queued or running audits that reuse the encoder."""
    active = Audit.status.in_(ACTIVE_STATUSES)
    stmt = select(func.count(Audit.id)).where(Audit.encoder_id == encoder_id, active)
    return int(session.scalar(stmt) or 0)


def unfinished_encoders(session: Session) -> list[uuid.UUID]:
    """Encoder jobs left queued or running, oldest first (the embedded runner resumes them)."""
    stmt = select(Encoder.id).where(Encoder.status.in_(ACTIVE_STATUSES)).order_by(Encoder.created_at)
    return list(session.scalars(stmt))
