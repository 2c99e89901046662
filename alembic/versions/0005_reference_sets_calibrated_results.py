"""calibrated verdicts: reference datasets (role 'reference', audits.reference_dataset_id) and per-row
p-values, q-values, role and source in audit_results

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from alembic import op
from synthaudit.app.core.migration_ops import sqlite_foreign_keys_off

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ROLES_BEFORE = "role IN ('real', 'generated')"
ROLES_AFTER = "role IN ('real', 'generated', 'reference')"


def _role_check(table: str, condition: str) -> None:
    """Replace the role CHECK constraint of `table` (datasets or images)."""
    with op.batch_alter_table(table) as batch:
        batch.drop_constraint(batch.f(f"ck_{table}_role"), type_="check")
        batch.create_check_constraint(batch.f(f"ck_{table}_role"), condition)


def upgrade() -> None:
    with sqlite_foreign_keys_off():
        _upgrade()


def _upgrade() -> None:
    _role_check("datasets", ROLES_AFTER)
    _role_check("images", ROLES_AFTER)
    with op.batch_alter_table("audits") as batch:
        batch.add_column(sa.Column("reference_dataset_id", sa.Uuid(), nullable=True))
        batch.create_index(batch.f("ix_audits_reference_dataset_id"), ["reference_dataset_id"])
        batch.create_foreign_key(
            batch.f("fk_audits_reference_dataset_id_datasets"),
            "datasets",
            ["reference_dataset_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("audit_results") as batch:
        batch.add_column(sa.Column("p_value", sa.Float(), nullable=True))
        batch.add_column(sa.Column("q_value", sa.Float(), nullable=True))
        batch.add_column(sa.Column("role", sa.String(length=16), server_default="candidate", nullable=False))
        batch.add_column(sa.Column("source", sa.String(length=16), server_default="real", nullable=False))


def downgrade() -> None:
    with sqlite_foreign_keys_off():
        _downgrade()


def _downgrade() -> None:
    # The old schema has no place for reference sets: their result rows, images and datasets go.
    op.execute("DELETE FROM audit_results WHERE source = 'reference'")
    with op.batch_alter_table("audit_results") as batch:
        batch.drop_column("source")
        batch.drop_column("role")
        batch.drop_column("q_value")
        batch.drop_column("p_value")
    with op.batch_alter_table("audits") as batch:
        batch.drop_constraint(batch.f("fk_audits_reference_dataset_id_datasets"), type_="foreignkey")
        batch.drop_index(batch.f("ix_audits_reference_dataset_id"))
        batch.drop_column("reference_dataset_id")
    op.execute("DELETE FROM images WHERE role = 'reference'")
    op.execute("DELETE FROM datasets WHERE role = 'reference'")
    _role_check("images", ROLES_BEFORE)
    _role_check("datasets", ROLES_BEFORE)
