"""Queries of checkpoint comparisons and their checkpoints."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import CompoundSelect, delete, func, or_, select, update
from sqlalchemy.orm import Session

from synthaudit.app.core.repository.listing import Window, in_window
from synthaudit.app.core.repository.rows import rows_affected
from synthaudit.app.core.tables import ACTIVE_STATUSES, Comparison, ComparisonCheckpoint, utcnow


def add_comparison(
    session: Session, comparison: Comparison, checkpoints: Sequence[tuple[str, uuid.UUID]]
) -> None:
    """Insert the comparison and its (name, dataset id) checkpoints in checkpoint order (flushed)."""
    session.add(comparison)
    session.flush()
    for position, (name, dataset_id) in enumerate(checkpoints):
        session.add(
            ComparisonCheckpoint(
                comparison_id=comparison.id, position=position, name=name, dataset_id=dataset_id
            )
        )
    session.flush()


def get_comparison(
    session: Session, comparison_id: uuid.UUID, tenant: str | None = None
) -> Comparison | None:
    """The comparison; None when missing or (with a tenant) owned by another tenant."""
    comparison = session.get(Comparison, comparison_id)
    if comparison is None or (tenant is not None and comparison.tenant != tenant):
        return None
    return comparison


def comparison_checkpoints(session: Session, comparison_id: uuid.UUID) -> list[ComparisonCheckpoint]:
    """The comparison's checkpoints in checkpoint order."""
    stmt = (
        select(ComparisonCheckpoint)
        .where(ComparisonCheckpoint.comparison_id == comparison_id)
        .order_by(ComparisonCheckpoint.position)
    )
    return list(session.scalars(stmt))


def checkpoints_of(session: Session, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[ComparisonCheckpoint]]:
    """The checkpoints of several comparisons (a listing page), in checkpoint order."""
    out: dict[uuid.UUID, list[ComparisonCheckpoint]] = {i: [] for i in ids}
    if not ids:
        return out
    stmt = (
        select(ComparisonCheckpoint)
        .where(ComparisonCheckpoint.comparison_id.in_(list(ids)))
        .order_by(ComparisonCheckpoint.comparison_id, ComparisonCheckpoint.position)
    )
    for checkpoint in session.scalars(stmt):
        out[checkpoint.comparison_id].append(checkpoint)
    return out


def list_comparisons(session: Session, window: Window, status: str | None = None) -> list[Comparison]:
    """A page of the tenant's comparisons (optionally in one status)."""
    stmt = select(Comparison)
    if status is not None:
        stmt = stmt.where(Comparison.status == status)
    return list(session.scalars(in_window(stmt, Comparison, window)))


def delete_comparison(session: Session, comparison_id: uuid.UUID) -> None:
    """Delete the comparison's checkpoints and its row."""
    session.execute(delete(ComparisonCheckpoint).where(ComparisonCheckpoint.comparison_id == comparison_id))
    session.execute(delete(Comparison).where(Comparison.id == comparison_id))


def cancel_comparison(session: Session, comparison_id: uuid.UUID) -> bool:
    """Mark a queued or running comparison cancelled; False when it had already ended."""
    result = session.execute(
        update(Comparison)
        .where(Comparison.id == comparison_id, Comparison.status.in_(ACTIVE_STATUSES))
        .values(status="cancelled", finished_at=utcnow())
    )
    return rows_affected(result) == 1


def store_comparison_rows(
    session: Session, comparison_id: uuid.UUID, rows: dict[str, dict[str, Any]]
) -> None:
    """Each checkpoint's line of the comparison table, by checkpoint name."""
    for checkpoint in comparison_checkpoints(session, comparison_id):
        checkpoint.row = rows.get(checkpoint.name)


def unfinished_comparisons(session: Session) -> list[uuid.UUID]:
    """Comparisons left queued or running, oldest first (the embedded runner resumes them)."""
    stmt = select(Comparison.id).where(Comparison.status.in_(ACTIVE_STATUSES)).order_by(Comparison.created_at)
    return list(session.scalars(stmt))


def active_comparison_datasets() -> CompoundSelect:
    """A select of every dataset id that queued or running comparisons read (real, reference, generated),
    NULLs left out (a NULL in a NOT IN list would match nothing)."""
    active = Comparison.status.in_(ACTIVE_STATUSES)
    generated = (
        select(ComparisonCheckpoint.dataset_id)
        .join(Comparison, Comparison.id == ComparisonCheckpoint.comparison_id)
        .where(active, ComparisonCheckpoint.dataset_id.is_not(None))
    )
    real = select(Comparison.real_dataset_id).where(active, Comparison.real_dataset_id.is_not(None))
    reference = select(Comparison.reference_dataset_id).where(
        active, Comparison.reference_dataset_id.is_not(None)
    )
    return real.union(reference, generated)


def count_active_comparisons_using(session: Session, dataset_id: uuid.UUID) -> int:
    """Queued or running comparisons that read the dataset (as real, reference or a checkpoint)."""
    as_checkpoint = select(ComparisonCheckpoint.comparison_id).where(
        ComparisonCheckpoint.dataset_id == dataset_id
    )
    stmt = select(func.count(Comparison.id)).where(
        Comparison.status.in_(ACTIVE_STATUSES),
        or_(
            Comparison.real_dataset_id == dataset_id,
            Comparison.reference_dataset_id == dataset_id,
            Comparison.id.in_(as_checkpoint),
        ),
    )
    return int(session.scalar(stmt) or 0)


def expired_comparisons(session: Session, before: datetime) -> list[uuid.UUID]:
    """Finished comparisons created before `before` whose output files were not purged yet."""
    stmt = select(Comparison.id).where(
        Comparison.created_at < before,
        Comparison.status.not_in(ACTIVE_STATUSES),
        Comparison.purged_at.is_(None),
    )
    return list(session.scalars(stmt))


def mark_comparison_purged(session: Session, comparison_id: uuid.UUID) -> None:
    """The comparison's files are gone: its row and table lines stay."""
    session.execute(update(Comparison).where(Comparison.id == comparison_id).values(purged_at=utcnow()))
