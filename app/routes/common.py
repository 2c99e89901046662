"""OpenAPI descriptions of the problem+json error responses shared by the routes."""

from __future__ import annotations

from typing import Any

from app.schemas import Problem

_PROBLEM_CONTENT = {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """`responses=` entries for the given error statuses."""
    return {
        status: {"model": Problem, "content": _PROBLEM_CONTENT, "description": "problem details"}
        for status in statuses
    }
