"""workflow: reusable encoders, audit webhooks, DICOM patient/study/series keys, patient labels, audit trail

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op
from synthaudit.app.core.migration_ops import sqlite_foreign_keys_off

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "encoders",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("dataset_ids", JSON, nullable=False),
        sa.Column("config", JSON, nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("data_hash", sa.String(length=64), nullable=True),
        sa.Column("n_images", sa.Integer(), nullable=True),
        sa.Column("final_loss", sa.Float(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_encoders_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_encoders")),
    )
    op.create_index(op.f("ix_encoders_tenant"), "encoders", ["tenant"])
    op.create_index(op.f("ix_encoders_created_at"), "encoders", ["created_at"])

    with sqlite_foreign_keys_off(), op.batch_alter_table("audits") as batch:  # keeps audit_results rows
        batch.add_column(sa.Column("encoder_id", sa.Uuid(), nullable=True))
        batch.add_column(sa.Column("webhook_url", sa.String(length=2048), nullable=True))
        batch.add_column(sa.Column("webhook_status", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("webhook_attempts", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("patient_labels", JSON, nullable=True))
        batch.add_column(
            sa.Column("patient_aggregation", sa.String(length=16), server_default="any", nullable=False)
        )
        batch.add_column(sa.Column("trail", JSON, nullable=True))
        batch.create_index(batch.f("ix_audits_encoder_id"), ["encoder_id"])
        batch.create_foreign_key(
            batch.f("fk_audits_encoder_id_encoders"), "encoders", ["encoder_id"], ["id"], ondelete="SET NULL"
        )

    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("patient_key", sa.String(length=24), nullable=True))
        batch.add_column(sa.Column("study_key", sa.String(length=24), nullable=True))
        batch.add_column(sa.Column("series_key", sa.String(length=24), nullable=True))
        batch.create_index(batch.f("ix_images_patient_key"), ["patient_key"])


def downgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.drop_index(batch.f("ix_images_patient_key"))
        batch.drop_column("series_key")
        batch.drop_column("study_key")
        batch.drop_column("patient_key")
    with sqlite_foreign_keys_off(), op.batch_alter_table("audits") as batch:
        batch.drop_constraint(batch.f("fk_audits_encoder_id_encoders"), type_="foreignkey")
        batch.drop_index(batch.f("ix_audits_encoder_id"))
        batch.drop_column("trail")
        batch.drop_column("patient_aggregation")
        batch.drop_column("patient_labels")
        batch.drop_column("webhook_attempts")
        batch.drop_column("webhook_status")
        batch.drop_column("webhook_url")
        batch.drop_column("encoder_id")
    op.drop_index(op.f("ix_encoders_created_at"), table_name="encoders")
    op.drop_index(op.f("ix_encoders_tenant"), table_name="encoders")
    op.drop_table("encoders")
