"""Tenant listings: newest first, keyset pagination (app/services/listing.py reads the pages)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from sqlalchemy import Select, tuple_

from synthaudit.app.core.tables import Audit, Comparison, Dataset, Encoder


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


SelectT = TypeVar("SelectT", bound=Select)


def in_window(stmt: SelectT, model: type[Dataset | Audit | Encoder | Comparison], window: Window) -> SelectT:
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
