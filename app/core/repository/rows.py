"""How many rows an UPDATE or DELETE touched (SQLAlchemy types `Session.execute` as a plain Result)."""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Result


def rows_affected(result: Result[Any]) -> int:
    """The rowcount of a DML statement's result: its execute() returns a CursorResult at run time."""
    return cast("CursorResult[Any]", result).rowcount
