"""per-webhook signing secrets (Standard Webhooks): audits.webhook_secret, generated when an audit with a
webhook_url is created and shown once in the answer; the sender signs every delivery with it

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02

Audits created before this revision have no secret: their pending webhooks are not sent (a delivery is
never unsigned), see app/core/webhooks.py.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from synthaudit.app.core.migration_ops import sqlite_foreign_keys_off

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with sqlite_foreign_keys_off(), op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("webhook_secret", sa.String(length=128), nullable=True))


def downgrade() -> None:
    with sqlite_foreign_keys_off(), op.batch_alter_table("audits") as batch:
        batch.drop_column("webhook_secret")
