"""The query parameters the tenant listings share (GET /v1/datasets, /v1/audits, /v1/encoders,
/v1/comparisons)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import Depends, Query

from synthaudit.app.services.listing import (
    CURSOR_PATTERN,
    DEFAULT_LIMIT,
    MAX_CURSOR_CHARS,
    MAX_LIMIT,
    ListingParams,
)


def listing_params(
    limit: Annotated[
        int, Query(ge=1, le=MAX_LIMIT, description=f"items per page, 1-{MAX_LIMIT}")
    ] = DEFAULT_LIMIT,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_CURSOR_CHARS,
            pattern=CURSOR_PATTERN,
            description="the `next_cursor` of the previous page, as it is (opaque)",
        ),
    ] = None,
    created_after: Annotated[
        datetime | None,
        Query(description="only items created at or after this time (ISO 8601; without an offset: UTC)"),
    ] = None,
    created_before: Annotated[
        datetime | None, Query(description="only items created before this time (ISO 8601)")
    ] = None,
) -> ListingParams:
    """Page size, position and time range of a listing (newest first)."""
    return ListingParams(limit, cursor, created_after, created_before)


ListingDep = Annotated[ListingParams, Depends(listing_params)]
