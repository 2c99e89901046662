"""The comparison job on a real (SQLite) database: it runs to the same table as the engine, fails clearly
when a dataset is gone, its heartbeat interrupts it when cancelled, the sweep re-sends exactly the
orphaned ones (once), progress is one scale over the series, and retention purges its files only."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthaudit.app.core import repository as repo
from synthaudit.app.core.config import Settings
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.migrations import ensure_schema
from synthaudit.app.core.tables import Comparison, Dataset, utcnow
from synthaudit.worker.comparison_jobs import ProgressWriter, run_comparison_job
from synthaudit.worker.context import WorkerContext


@pytest.fixture()
def ctx(tmp_path: Path) -> WorkerContext:
    settings = Settings(
        synthaudit_home=tmp_path, progress_interval_s=0.0, heartbeat_interval_s=0.1, orphan_after_s=5.0
    )
    ensure_schema(settings.database_url, auto_upgrade=True)
    return WorkerContext.from_settings(settings)


def _dataset(ctx: WorkerContext, role: str, seeds: range) -> uuid.UUID:
    with session_scope(ctx.sessions) as session:
        dataset = Dataset(role=role, image_count=len(seeds), total_bytes=0, rejected=[])
        repo.add_dataset(session, dataset, [])
        folder = ctx.storage.dataset_images(dataset.id)
        folder.mkdir(parents=True)
        for seed in seeds:
            arr = np.random.default_rng(seed).integers(0, 255, (16, 16), dtype=np.uint8)
            Image.fromarray(arr).save(folder / f"i{seed}.png")
        return dataset.id


def make_comparison(
    ctx: WorkerContext, status: str = "queued", seconds_since_sign_of_life: float = 0.0
) -> uuid.UUID:
    """A pixels comparison of two 4-image checkpoints against 4 real images (no reference)."""
    from synthaudit.models.config import AuditConfig

    real = _dataset(ctx, "real", range(4))
    checkpoints = [
        ("step-1", _dataset(ctx, "generated", range(2, 6))),
        ("step-2", _dataset(ctx, "generated", range(10, 14))),
    ]
    then = utcnow() - timedelta(seconds=seconds_since_sign_of_life)
    with session_scope(ctx.sessions) as session:
        comparison = Comparison(
            real_dataset_id=real,
            config=AuditConfig(method="pixels", image_size=16).to_dict(),
            level=0.05,
            status=status,
            progress=0.0,
            created_at=then,
            heartbeat_at=then if status == "running" else None,
        )
        repo.add_comparison(session, comparison, checkpoints)
        return comparison.id


def row(ctx: WorkerContext, comparison_id: uuid.UUID) -> tuple[Comparison, list[dict | None]]:
    with session_scope(ctx.sessions) as session:
        comparison = repo.get_comparison(session, comparison_id)
        assert comparison is not None
        rows = [c.row for c in repo.comparison_checkpoints(session, comparison_id)]
        session.expunge(comparison)
        return comparison, rows


def test_the_job_stores_the_engines_table_and_keeps_only_its_outputs(ctx: WorkerContext) -> None:
    comparison_id = make_comparison(ctx)
    assert run_comparison_job(ctx, comparison_id) == "succeeded"
    comparison, rows = row(ctx, comparison_id)
    assert comparison.status == "succeeded" and comparison.progress == 100.0 and comparison.summary
    assert comparison.started_at is not None and comparison.finished_at is not None
    assert [r["name"] for r in rows if r] == ["step-1", "step-2"]
    assert all(r and r["verdict"] == "uncalibrated" and r["holm_p"] is None for r in rows)  # no reference
    folder = ctx.storage.comparison_dir(comparison_id)
    assert sorted(p.name for p in folder.iterdir()) == ["out"]
    assert (folder / "out" / "step-2" / "results-imageclef.csv").exists()
    assert run_comparison_job(ctx, comparison_id) == "stopped"  # a late redelivery does nothing


def test_a_comparison_whose_dataset_is_gone_fails_with_a_message(ctx: WorkerContext) -> None:
    from sqlalchemy import update

    from synthaudit.app.core.tables import ComparisonCheckpoint

    comparison_id = make_comparison(ctx)
    with session_scope(ctx.sessions) as session:
        session.execute(
            update(ComparisonCheckpoint)
            .where(ComparisonCheckpoint.comparison_id == comparison_id)
            .values(dataset_id=None)
        )
    assert run_comparison_job(ctx, comparison_id) == "failed"
    comparison, _ = row(ctx, comparison_id)
    assert comparison.status == "failed" and "deleted" in (comparison.error or "")
    assert not ctx.storage.comparison_dir(comparison_id).exists()


def test_the_heartbeat_interrupts_a_cancelled_comparison(ctx: WorkerContext) -> None:
    from synthaudit.worker.errors import ComparisonStopped
    from synthaudit.worker.heartbeat import ComparisonHeartbeat

    comparison_id = make_comparison(ctx, status="running")
    started = time.monotonic()
    with pytest.raises(ComparisonStopped), ComparisonHeartbeat(ctx, comparison_id):
        with session_scope(ctx.sessions) as session:
            assert repo.cancel_comparison(session, comparison_id)
        while time.monotonic() - started < 10:  # a long step that never reports progress
            sum(range(10_000))
    assert time.monotonic() - started < 2.0


def test_the_sweep_resends_exactly_the_orphaned_comparisons_once(ctx: WorkerContext) -> None:
    from synthaudit.worker.recovery import sweep_comparisons

    dead_running = make_comparison(ctx, "running", 60)
    fresh_running = make_comparison(ctx, "running", 1)
    lost_queued = make_comparison(ctx, "queued", 60)
    waiting_queued = make_comparison(ctx, "queued", 60)
    make_comparison(ctx, "succeeded", 60)
    sent: list[uuid.UUID] = []
    queue = f'{{"headers": {{"id": "{waiting_queued}-comparison"}}}}'.encode()
    assert sorted(sweep_comparisons(ctx, sent.append, lambda: queue)) == sorted([dead_running, lost_queued])
    assert fresh_running not in sent
    assert sweep_comparisons(ctx, sent.append, lambda: queue) == [] and len(sent) == 2  # refreshed: once


def test_progress_is_one_scale_over_the_series(ctx: WorkerContext) -> None:
    writer = ProgressWriter(ctx, uuid.uuid4(), n_checkpoints=3)
    steps = [("decode real", 0.0), ("decode real", 1.0), ("1/3 decode", 0.0), ("1/3 decide", 1.0)]
    steps += [("2/3 embed", 0.5), ("3/3 decide", 1.0)]
    percents = [writer.percent(stage, f) for stage, f in steps]
    assert percents == sorted(percents) and percents[0] == 0.0 and percents[1] == 25.0
    assert percents[3] == 50.0 and percents[-1] == 99.9


def test_retention_purges_old_comparisons_files_but_not_datasets_in_use(ctx: WorkerContext) -> None:
    from synthaudit.app.core.retention import purge_expired

    done = make_comparison(ctx)
    assert run_comparison_job(ctx, done) == "succeeded"
    active = make_comparison(ctx, "queued")
    with session_scope(ctx.sessions) as session:
        for comparison_id in (done, active):
            comparison = repo.get_comparison(session, comparison_id)
            assert comparison is not None
            comparison.created_at = utcnow() - timedelta(days=3)
        session.execute(
            Dataset.__table__.update().values(created_at=utcnow() - timedelta(days=3))  # type: ignore[attr-defined]
        )
    purge_expired(ctx.sessions, ctx.storage, retention_days=1)
    purged, rows = row(ctx, done)
    assert purged.purged_at is not None and all(rows)  # the table stays
    assert not ctx.storage.comparison_dir(done).exists()
    kept, _ = row(ctx, active)
    assert kept.purged_at is None
    with session_scope(ctx.sessions) as session:
        in_use = [c.dataset_id for c in repo.comparison_checkpoints(session, active)]
        in_use.append(kept.real_dataset_id)
        assert all(repo.get_dataset(session, d).purged_at is None for d in in_use if d)  # type: ignore[union-attr]
        finished = [c.dataset_id for c in repo.comparison_checkpoints(session, done)]
        assert all(repo.get_dataset(session, d).purged_at is not None for d in finished if d)  # type: ignore[union-attr]
