"""The stage wrapper on a real (SQLite) database: throttled progress, cancellation, user-facing failures."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from worker_audits import audit_row, make_audit

from synthaudit.app.core import repository as repo
from synthaudit.app.core.config import Settings
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.migrations import ensure_schema
from synthaudit.worker.context import WorkerContext
from synthaudit.worker.errors import AuditStopped
from synthaudit.worker.pipeline import Outcome, ProgressReporter, execute_stage


@pytest.fixture()
def ctx(tmp_path: Path) -> WorkerContext:
    settings = Settings(synthaudit_home=tmp_path, progress_interval_s=60.0)
    ensure_schema(settings.database_url, auto_upgrade=True)
    return WorkerContext.from_settings(settings)


def test_progress_is_throttled_and_stops_a_cancelled_audit(ctx: WorkerContext) -> None:
    audit_id = make_audit(ctx, {"real": 2, "generated": 2})
    with session_scope(ctx.sessions) as session:
        assert repo.start_stage(session, audit_id, "embed", 30.0)
    reporter = ProgressReporter(ctx, audit_id, "embed")
    reporter(0.5)
    first = audit_row(ctx, audit_id).progress
    assert first > 30.0
    reporter(0.9)  # within PROGRESS_INTERVAL_S: not written
    assert audit_row(ctx, audit_id).progress == first
    with session_scope(ctx.sessions) as session:
        assert repo.cancel_audit(session, audit_id)
    with pytest.raises(AuditStopped):
        reporter.write(1.0)


def test_cancelled_or_deleted_audits_do_no_work(ctx: WorkerContext) -> None:
    audit_id = make_audit(ctx, {"real": 2, "generated": 2})
    with session_scope(ctx.sessions) as session:
        repo.cancel_audit(session, audit_id)
    assert execute_stage(ctx, audit_id, "decode") is Outcome.STOPPED
    assert not ctx.storage.audit_workdir(audit_id).exists()
    deleted = uuid.uuid4()  # deleted while a stage ran: what that stage wrote is removed
    (ctx.storage.audit_workdir(deleted) / "images.npz").parent.mkdir(parents=True)
    assert execute_stage(ctx, deleted, "search") is Outcome.STOPPED
    assert not ctx.storage.audit_workdir(deleted).exists()


def test_stages_run_in_order_and_skip_finished_work(ctx: WorkerContext) -> None:
    from synthaudit.models.stages import STAGES

    audit_id = make_audit(ctx, {"real": 3, "generated": 4})
    for stage in STAGES:
        assert execute_stage(ctx, audit_id, stage) is Outcome.DONE
    audit = audit_row(ctx, audit_id)
    assert (audit.status, audit.progress, audit.stage) == ("succeeded", 100.0, "decide")
    with session_scope(ctx.sessions) as session:
        results = repo.get_results(session, audit_id)
    assert [r.image_name for r in results] == ["real0", "real1", "real2"]
    assert all(len(r.nearest_generated) == len(r.similarities) >= 1 for r in results)
    assert execute_stage(ctx, audit_id, "decode") is Outcome.STOPPED  # finished audits stay finished


def test_reference_images_are_stored_after_the_real_ones(ctx: WorkerContext) -> None:
    """A reference set's images are scored and stored (source 'reference', positions after the real
    rows, p-values empty) but are not among the real rows; the real rows carry p- and q-values."""
    from synthaudit.models.stages import STAGES

    audit_id = make_audit(ctx, {"real": 3, "generated": 4, "reference": 5})
    for stage in STAGES:
        assert execute_stage(ctx, audit_id, stage) is Outcome.DONE
    with session_scope(ctx.sessions) as session:
        real = repo.get_results(session, audit_id, source="real")
        reference = repo.get_results(session, audit_id, source="reference")
        everything = repo.get_results(session, audit_id)
        summary = repo.get_metrics(session, audit_id).metrics
    assert [r.image_name for r in real] == ["real0", "real1", "real2"]
    assert [r.image_name for r in reference] == [f"reference{i}" for i in range(5)]
    assert [r.position for r in everything] == list(range(8))
    assert all(r.p_value is not None and r.q_value is not None and r.role == "candidate" for r in real)
    assert all(r.p_value is None and r.role == "reference" and r.used == 0 for r in reference)
    assert summary["calibrated"] is True and summary["n_reference_set"] == 5


def test_a_deleted_reference_dataset_fails_the_audit(ctx: WorkerContext) -> None:
    audit_id = make_audit(ctx, {"real": 2, "generated": 2, "reference": 2})
    with session_scope(ctx.sessions) as session:
        audit = repo.get_audit(session, audit_id)
        audit.trail = {"inputs": {"reference": {"images": 2}}}
        repo.delete_dataset(session, audit.reference_dataset_id)  # ondelete SET NULL
    assert audit_row(ctx, audit_id).reference_dataset_id is None
    assert execute_stage(ctx, audit_id, "decode") is Outcome.FAILED
    assert "reference" in audit_row(ctx, audit_id).error and "deleted" in audit_row(ctx, audit_id).error


def test_user_data_problems_fail_the_audit_with_a_message(ctx: WorkerContext) -> None:
    audit_id = make_audit(ctx, {"real": 0, "generated": 2})
    assert execute_stage(ctx, audit_id, "decode") is Outcome.FAILED
    audit = audit_row(ctx, audit_id)
    assert (
        audit.status == "failed"
        and audit.error.startswith("decode: ")
        and "no readable images" in audit.error
    )


def test_retention_purges_old_finished_audits_and_unused_datasets(ctx: WorkerContext) -> None:
    from datetime import timedelta

    from synthaudit.app.core.retention import purge_expired
    from synthaudit.app.core.tables import utcnow

    audit_id = make_audit(ctx, {"real": 1, "generated": 1, "reference": 1})
    ctx.storage.audit_workdir(audit_id).mkdir(parents=True)
    assert purge_expired(ctx.sessions, ctx.storage, retention_days=1) == (0, 0)  # nothing is old yet
    with session_scope(ctx.sessions) as session:
        audit = repo.get_audit(session, audit_id)
        audit.created_at = utcnow() - timedelta(days=3)
        for dataset_id in (audit.real_dataset_id, audit.generated_dataset_id, audit.reference_dataset_id):
            repo.get_dataset(session, dataset_id).created_at = utcnow() - timedelta(days=3)
    assert purge_expired(ctx.sessions, ctx.storage, retention_days=1) == (0, 0)  # still queued: kept
    with session_scope(ctx.sessions) as session:
        repo.cancel_audit(session, audit_id)
    assert purge_expired(ctx.sessions, ctx.storage, retention_days=1) == (1, 3)
    assert not ctx.storage.audit_workdir(audit_id).exists()
    assert not any((ctx.storage.root / "datasets").iterdir())


def test_a_stage_that_keeps_killing_its_worker_fails_the_audit(ctx: WorkerContext) -> None:
    audit_id = make_audit(ctx, {"real": 2, "generated": 2})
    workdir = ctx.storage.audit_workdir(audit_id)
    workdir.mkdir(parents=True)
    (workdir / ".attempt-decode").write_text("2")  # left by a third attempt that died (e.g. OOM kill)
    assert execute_stage(ctx, audit_id, "decode") is Outcome.FAILED
    assert "interrupted 3 times" in audit_row(ctx, audit_id).error


def test_failure_messages_of_tasks() -> None:
    from celery.exceptions import TimeLimitExceeded
    from sqlalchemy.exc import OperationalError

    from synthaudit.worker.base import failure_message

    assert "hard time limit" in failure_message("pretrain", TimeLimitExceeded(10))
    assert "could not reach the database" in failure_message("embed", OperationalError("x", {}, Exception()))
