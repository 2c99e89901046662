"""initial schema: datasets, images, audits, audit_results, audit_metrics

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "datasets",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=True),
        sa.Column("image_count", sa.Integer(), nullable=False),
        sa.Column("total_bytes", sa.BigInteger(), nullable=False),
        sa.Column("rejected", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint("role IN ('real', 'generated')", name=op.f("ck_datasets_role")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_datasets")),
    )
    op.create_index(op.f("ix_datasets_created_at"), "datasets", ["created_at"])

    op.create_table(
        "images",
        sa.Column(
            "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("dataset_id", sa.Uuid(), nullable=False),
        sa.Column("name", sa.String(length=1024), nullable=False),
        sa.Column("file_name", sa.String(length=1024), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.CheckConstraint("role IN ('real', 'generated')", name=op.f("ck_images_role")),
        sa.ForeignKeyConstraint(
            ["dataset_id"], ["datasets.id"], name=op.f("fk_images_dataset_id_datasets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_images")),
        sa.UniqueConstraint("dataset_id", "name", name="uq_images_dataset_id_name"),
    )
    op.create_index(op.f("ix_images_dataset_id"), "images", ["dataset_id"])
    op.create_index(op.f("ix_images_sha256"), "images", ["sha256"])

    op.create_table(
        "audits",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("real_dataset_id", sa.Uuid(), nullable=True),
        sa.Column("generated_dataset_id", sa.Uuid(), nullable=True),
        sa.Column("config", JSON, nullable=False),
        sa.Column("labels", JSON, nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("stage_timings", JSON, nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("idempotency_key", sa.String(length=255), nullable=True),
        sa.Column("request_hash", sa.String(length=64), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_audits_status"),
        ),
        sa.ForeignKeyConstraint(
            ["real_dataset_id"],
            ["datasets.id"],
            name=op.f("fk_audits_real_dataset_id_datasets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["generated_dataset_id"],
            ["datasets.id"],
            name=op.f("fk_audits_generated_dataset_id_datasets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audits")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_audits_idempotency_key")),
    )
    op.create_index(op.f("ix_audits_real_dataset_id"), "audits", ["real_dataset_id"])
    op.create_index(op.f("ix_audits_generated_dataset_id"), "audits", ["generated_dataset_id"])
    op.create_index("ix_audits_status_created_at", "audits", ["status", "created_at"])

    op.create_table(
        "audit_results",
        sa.Column("audit_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("image_name", sa.String(length=1024), nullable=False),
        sa.Column("used", sa.SmallInteger(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("nearest_generated", JSON, nullable=False),
        sa.Column("similarities", JSON, nullable=False),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["audits.id"], name=op.f("fk_audit_results_audit_id_audits"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("audit_id", "position", name=op.f("pk_audit_results")),
    )

    op.create_table(
        "audit_metrics",
        sa.Column("audit_id", sa.Uuid(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("decision_rule", sa.String(length=32), nullable=False),
        sa.Column("counts", JSON, nullable=False),
        sa.Column("metrics", JSON, nullable=True),
        sa.Column("rejected", JSON, nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["audit_id"], ["audits.id"], name=op.f("fk_audit_metrics_audit_id_audits"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("audit_id", name=op.f("pk_audit_metrics")),
    )


def downgrade() -> None:
    op.drop_table("audit_metrics")
    op.drop_table("audit_results")
    op.drop_index("ix_audits_status_created_at", table_name="audits")
    op.drop_index(op.f("ix_audits_generated_dataset_id"), table_name="audits")
    op.drop_index(op.f("ix_audits_real_dataset_id"), table_name="audits")
    op.drop_table("audits")
    op.drop_index(op.f("ix_images_sha256"), table_name="images")
    op.drop_index(op.f("ix_images_dataset_id"), table_name="images")
    op.drop_table("images")
    op.drop_index(op.f("ix_datasets_created_at"), table_name="datasets")
    op.drop_table("datasets")
