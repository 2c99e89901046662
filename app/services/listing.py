"""Tenant-scoped listings, newest first, with keyset pagination: the opaque cursor and the time window.

A cursor is the URL-safe base64 (no padding) of the JSON `["<created_at, ISO 8601 UTC>", "<id>"]` of
the last item of a page; the next page holds the items strictly older in the order (created_at, id)
descending. So items created while a client walks the pages never shift it (they sort before its
position): every item that existed when the walk began is seen exactly once. A cursor carries no
authority: the query is limited to the caller's tenant whatever it says, so a forged one can only move
the position. Anything that is not a cursor this service could have issued is a 422.
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from synthaudit.app.core.repository import Window
from synthaudit.app.problems import Unprocessable

DEFAULT_LIMIT, MAX_LIMIT = 50, 200
MAX_CURSOR_CHARS = 256  # a cursor this service issues is about 110 characters
CURSOR_PATTERN = r"^[A-Za-z0-9_-]+$"
T = TypeVar("T")
PageT = TypeVar("PageT", bound=BaseModel)


@dataclass(frozen=True)
class ListingParams:
    """The query parameters every listing shares (validated for type and range by the route)."""

    limit: int = DEFAULT_LIMIT
    cursor: str | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None


def encode_cursor(created_at: datetime, item_id: uuid.UUID) -> str:
    """The cursor that continues a listing after the item (created_at, item_id)."""
    raw = json.dumps([_utc(created_at).isoformat(), str(item_id)], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode()


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """(created_at in UTC, id) of a cursor; 422 for anything else."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("too long")
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_", validate=True)
        value = json.loads(raw.decode("utf-8"))
        if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
            raise ValueError("not a pair of strings")
        stamp, item_id = datetime.fromisoformat(value[0]), uuid.UUID(value[1])
        if stamp.tzinfo is None:
            raise ValueError("no time zone")
        return stamp.astimezone(UTC), item_id
    except (ValueError, TypeError, OverflowError, binascii.Error):
        raise Unprocessable(
            "cursor: not a cursor of this listing; pass the next_cursor of the previous page as it is"
        ) from None


def window(params: ListingParams, tenant: str) -> Window:
    """The repository window of a request: its tenant, its time range in UTC and its keyset position."""
    after = _bound("created_after", params.created_after)
    before = _bound("created_before", params.created_before)
    if after is not None and before is not None and after >= before:
        raise Unprocessable("created_after must be earlier than created_before")
    position = decode_cursor(params.cursor) if params.cursor is not None else None
    return Window(tenant, after, before, position, params.limit)


def page_of(
    rows: Sequence[T], limit: int, position: Callable[[T], tuple[datetime, uuid.UUID]]
) -> tuple[list[T], str | None]:
    """The page's rows (the repository reads one more than `limit`) and the cursor of the next page,
    None on the last page; `position` gives a row's (created_at, id)."""
    items = list(rows[:limit])
    if len(rows) <= limit or not items:
        return items, None
    return items, encode_cursor(*position(items[-1]))


def tenant_page(
    page: type[PageT],
    read: Callable[[Window], Sequence[T]],
    params: ListingParams,
    tenant: str,
    position: Callable[[T], tuple[datetime, uuid.UUID]],
    item: Callable[[T], Any],
) -> PageT:
    """One page of a tenant listing: `read` the repository's rows in the request's window, keep
    `params.limit` of them as `item`s, with the cursor of the next page (`position`: a row's
    (created_at, id))."""
    rows = read(window(params, tenant))
    items, cursor = page_of(rows, params.limit, position)
    return page(items=[item(row) for row in items], next_cursor=cursor)


def _bound(name: str, value: datetime | None) -> datetime | None:
    """A time bound in UTC (a value without an offset is taken as UTC); 422 when it has no UTC form."""
    if value is None:
        return None
    try:
        return _utc(value)
    except (OverflowError, ValueError):
        raise Unprocessable(f"{name}: out of range once converted to UTC") from None


def _utc(value: datetime) -> datetime:
    """Stored timestamps are UTC; SQLite gives them back without an offset."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
