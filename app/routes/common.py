"""OpenAPI descriptions of the problem+json error responses shared by the routes; shared query bounds."""

from __future__ import annotations

from typing import Any

from synthaudit.app.schemas import Problem

# The largest offset a query may ask for: below every database's integer range (SQLite and Postgres
# BIGINT overflow at 2^63, and an offset of 10^20 was a 500), and above any real dataset's image count.
MAX_OFFSET = 2**31 - 1

_PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the given error statuses."""
    return {
        status: {"model": Problem, "content": _PROBLEM_CONTENT, "description": "problem details"}
        for status in statuses
    }
