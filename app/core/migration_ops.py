"""Operations shared by migration scripts (alembic/versions)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from alembic import op


@contextmanager
def sqlite_foreign_keys_off() -> Iterator[None]:
    """Switch SQLite's foreign-key enforcement off around table rebuilds.

    SQLite changes a column or constraint by rebuilding the table, and dropping the old `datasets` or
    `audits` table with foreign keys enforced cascades (images deleted, dataset ids nulled, results
    deleted). The pragma only works outside a transaction, hence the autocommit block. No-op elsewhere.
    """
    sqlite = op.get_bind().dialect.name == "sqlite"
    if sqlite:
        with op.get_context().autocommit_block():
            op.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        if sqlite:
            with op.get_context().autocommit_block():
                op.execute("PRAGMA foreign_keys=ON")
