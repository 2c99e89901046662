"""tenants and API keys, per-tenant idempotency keys, retention purge marks, job heartbeats

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("key_hash", sa.String(length=64), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("revoked_at", TIMESTAMP, nullable=True),
        sa.Column("last_used_at", TIMESTAMP, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
        sa.UniqueConstraint("key_hash", name=op.f("uq_api_keys_key_hash")),
    )
    op.create_index(op.f("ix_api_keys_tenant"), "api_keys", ["tenant"])

    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False))
        batch.add_column(sa.Column("purged_at", TIMESTAMP, nullable=True))
        batch.create_index(batch.f("ix_datasets_tenant"), ["tenant"])

    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False))
        batch.add_column(sa.Column("purged_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("heartbeat_at", TIMESTAMP, nullable=True))
        batch.add_column(sa.Column("attempt", sa.Integer(), server_default="1", nullable=False))
        batch.create_index(batch.f("ix_audits_tenant"), ["tenant"])
        batch.drop_constraint("uq_audits_idempotency_key", type_="unique")
        batch.create_unique_constraint("uq_audits_tenant_idempotency_key", ["tenant", "idempotency_key"])


def downgrade() -> None:
    with op.batch_alter_table("audits") as batch:
        batch.drop_constraint("uq_audits_tenant_idempotency_key", type_="unique")
        batch.create_unique_constraint("uq_audits_idempotency_key", ["idempotency_key"])
        batch.drop_index(batch.f("ix_audits_tenant"))
        batch.drop_column("attempt")
        batch.drop_column("heartbeat_at")
        batch.drop_column("purged_at")
        batch.drop_column("tenant")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_index(batch.f("ix_datasets_tenant"))
        batch.drop_column("purged_at")
        batch.drop_column("tenant")
    op.drop_index(op.f("ix_api_keys_tenant"), table_name="api_keys")
    op.drop_table("api_keys")
