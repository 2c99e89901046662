"""checkpoint comparisons: comparisons (one job per series) and comparison_checkpoints (its generated sets,
in checkpoint order, with their line of the comparison table once done)

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-08
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")
TIMESTAMP = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "comparisons",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("tenant", sa.String(length=64), server_default="default", nullable=False),
        sa.Column("real_dataset_id", sa.Uuid(), nullable=True),
        sa.Column("reference_dataset_id", sa.Uuid(), nullable=True),
        sa.Column("config", JSON, nullable=False),
        sa.Column("level", sa.Float(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=64), nullable=True),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=True),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("heartbeat_at", TIMESTAMP, nullable=True),
        sa.Column("purged_at", TIMESTAMP, nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_comparisons_status"),
        ),
        sa.ForeignKeyConstraint(
            ["real_dataset_id"],
            ["datasets.id"],
            name=op.f("fk_comparisons_real_dataset_id_datasets"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["reference_dataset_id"],
            ["datasets.id"],
            name=op.f("fk_comparisons_reference_dataset_id_datasets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comparisons")),
    )
    op.create_index(op.f("ix_comparisons_tenant"), "comparisons", ["tenant"])
    op.create_index(op.f("ix_comparisons_real_dataset_id"), "comparisons", ["real_dataset_id"])
    op.create_index(op.f("ix_comparisons_reference_dataset_id"), "comparisons", ["reference_dataset_id"])
    op.create_index("ix_comparisons_tenant_created_at_id", "comparisons", ["tenant", "created_at", "id"])
    op.create_table(
        "comparison_checkpoints",
        sa.Column("comparison_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("dataset_id", sa.Uuid(), nullable=True),
        sa.Column("row", JSON, nullable=True),
        sa.ForeignKeyConstraint(
            ["comparison_id"],
            ["comparisons.id"],
            name=op.f("fk_comparison_checkpoints_comparison_id_comparisons"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["dataset_id"],
            ["datasets.id"],
            name=op.f("fk_comparison_checkpoints_dataset_id_datasets"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("comparison_id", "position", name=op.f("pk_comparison_checkpoints")),
        sa.UniqueConstraint("comparison_id", "name", name="uq_comparison_checkpoints_name"),
    )
    op.create_index(op.f("ix_comparison_checkpoints_dataset_id"), "comparison_checkpoints", ["dataset_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_comparison_checkpoints_dataset_id"), table_name="comparison_checkpoints")
    op.drop_table("comparison_checkpoints")
    op.drop_index("ix_comparisons_tenant_created_at_id", table_name="comparisons")
    op.drop_index(op.f("ix_comparisons_reference_dataset_id"), table_name="comparisons")
    op.drop_index(op.f("ix_comparisons_real_dataset_id"), table_name="comparisons")
    op.drop_index(op.f("ix_comparisons_tenant"), table_name="comparisons")
    op.drop_table("comparisons")
