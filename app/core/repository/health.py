"""The readiness probe's database check."""

from __future__ import annotations

from sqlalchemy import Engine, text


def ping(engine: Engine) -> None:
    """Run `SELECT 1` on a fresh connection; raises when the database does not answer."""
    with engine.connect() as conn:
        conn.execute(text("SELECT 1"))
