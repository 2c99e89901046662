"""Queries of API keys (only their hashes are stored)."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from synthaudit.app.core.tables import ApiKey


def add_key(session: Session, key: ApiKey) -> None:
    """Insert the key row (flushed: its id is set)."""
    session.add(key)
    session.flush()


def keys_of(session: Session, tenant: str | None = None) -> list[ApiKey]:
    """Every key (or the tenant's), by tenant then creation time."""
    stmt = select(ApiKey).order_by(ApiKey.tenant, ApiKey.created_at)
    if tenant:
        stmt = stmt.where(ApiKey.tenant == tenant)
    return list(session.scalars(stmt))


def keys_with_id_prefix(session: Session, prefix: str) -> list[ApiKey]:
    """The keys whose id (lower-case hex with dashes) starts with `prefix`."""
    return [k for k in session.scalars(select(ApiKey)) if str(k.id).startswith(prefix)]


def key_by_hash(session: Session, key_hash: str) -> ApiKey | None:
    """The key stored under this sha256, revoked or not."""
    return session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash))


def touch_key(session: Session, key_id: uuid.UUID, when: datetime) -> None:
    """Record when the key was last used."""
    session.execute(update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=when))
