"""webhook claim time (stalled deliveries are sent again), encoder retention (purged_at) and heartbeats

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("webhook_claimed_at", TIMESTAMP, nullable=True))
    with op.batch_alter_table("encoders") as batch:
        batch.add_column(sa.Column("purged_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("heartbeat_at", TIMESTAMP, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("encoders") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("purged_at")
    with op.batch_alter_table("audits") as batch:
        batch.drop_column("webhook_claimed_at")
