"""tenant-scoped listings: (tenant, created_at, id) indexes on datasets, audits and encoders, the keyset
order of GET /v1/datasets, /v1/audits and /v1/encoders (newest first)

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

Creating an index rebuilds no table (plain CREATE INDEX on SQLite too), so no foreign-key care is needed.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TABLES = ("datasets", "audits", "encoders")


def upgrade() -> None:
    for table in TABLES:
        op.create_index(f"ix_{table}_tenant_created_at_id", table, ["tenant", "created_at", "id"])


def downgrade() -> None:
    for table in reversed(TABLES):
        op.drop_index(f"ix_{table}_tenant_created_at_id", table_name=table)
