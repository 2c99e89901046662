"""Job durability on a real (SQLite) database: dispatch attempts fence old tasks, the sweep re-dispatches
exactly the orphaned audits (once), heartbeats notice cancellation, the watchdog fails a stuck stage.
(tests/faults/ does the same end to end with real workers killed, Redis and Postgres restarted.)"""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from worker_audits import audit_row, make_audit

from synthaudit.app.core import repository as repo
from synthaudit.app.core.config import Settings
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.migrations import ensure_schema
from synthaudit.app.core.tables import utcnow
from synthaudit.worker.context import WorkerContext
from synthaudit.worker.heartbeat import AuditHeartbeat as Heartbeat
from synthaudit.worker.pipeline import Outcome, execute_stage
from synthaudit.worker.recovery import sweep


@pytest.fixture()
def ctx(tmp_path: Path) -> WorkerContext:
    settings = Settings(
        synthaudit_home=tmp_path, progress_interval_s=0.0, heartbeat_interval_s=0.1, orphan_after_s=5.0
    )
    ensure_schema(settings.database_url, auto_upgrade=True)
    return WorkerContext.from_settings(settings)


def age(ctx: WorkerContext, audit_id: uuid.UUID, seconds: float) -> None:
    """Pretend the audit's last sign of life was `seconds` ago."""
    with session_scope(ctx.sessions) as session:
        audit = repo.get_audit(session, audit_id)
        assert audit is not None
        audit.created_at = audit.heartbeat_at = utcnow() - timedelta(seconds=seconds)


def test_a_task_of_an_older_attempt_stops_at_once(ctx: WorkerContext) -> None:
    audit_id = make_audit(ctx)
    with session_scope(ctx.sessions) as session:
        repo.get_audit(session, audit_id).attempt = 2  # type: ignore[union-attr]
    assert execute_stage(ctx, audit_id, "decode", attempt=1) is Outcome.STOPPED
    assert audit_row(ctx, audit_id).status == "queued"  # untouched
    assert not (ctx.storage.audit_workdir(audit_id) / "images.npz").exists()
    assert execute_stage(ctx, audit_id, "decode", attempt=2) is Outcome.DONE
    assert execute_stage(ctx, audit_id, "pretrain") is Outcome.DONE  # no attempt (old message): no fence
    audit = audit_row(ctx, audit_id)
    assert audit.status == "running" and audit.heartbeat_at is not None


def test_the_sweep_takes_exactly_the_orphans_once(ctx: WorkerContext) -> None:
    fresh_running = make_audit(ctx, status="running")
    dead_running = make_audit(ctx, status="running")
    waiting_queued = make_audit(ctx, status="queued")
    lost_queued = make_audit(ctx, status="queued")
    finished = make_audit(ctx, status="succeeded")
    for audit_id in (dead_running, waiting_queued, lost_queued, finished):
        age(ctx, audit_id, 60)
    sent: list[tuple[uuid.UUID, str, int]] = []

    def resend(audit_id: uuid.UUID, stage: str, attempt: int) -> None:
        sent.append((audit_id, stage, attempt))

    queue = f'{{"headers": {{"id": "{waiting_queued}-decode"}}}}'.encode()
    assert sorted(sweep(ctx, resend, lambda: queue)) == sorted([dead_running, lost_queued])
    assert sorted(sent) == sorted([(dead_running, "embed", 2), (lost_queued, "decode", 2)])
    assert audit_row(ctx, dead_running).attempt == 2 and audit_row(ctx, fresh_running).attempt == 1
    # Re-dispatching refreshed their heartbeat: a second sweep right after sends nothing.
    assert sweep(ctx, resend, lambda: queue) == [] and len(sent) == 2


def test_without_a_view_of_the_broker_only_dead_running_audits_are_taken(ctx: WorkerContext) -> None:
    dead_running, queued = make_audit(ctx, status="running"), make_audit(ctx, status="queued")
    age(ctx, dead_running, 60)
    age(ctx, queued, 60)
    sent: list[uuid.UUID] = []
    assert sweep(ctx, lambda a, s, n: sent.append(a), lambda: None) == [dead_running]
    assert sent == [dead_running]


def test_the_heartbeat_notices_a_cancel_and_refreshes_otherwise(ctx: WorkerContext) -> None:
    audit_id = make_audit(ctx, status="running")
    age(ctx, audit_id, 60)
    with Heartbeat(ctx, audit_id, "embed", attempt=1, interrupt=False) as heartbeat:
        time.sleep(0.35)
        assert not heartbeat.stopped.is_set()
        beat = audit_row(ctx, audit_id).heartbeat_at
        assert beat is not None and (utcnow() - beat.replace(tzinfo=utcnow().tzinfo)).total_seconds() < 5
        with session_scope(ctx.sessions) as session:
            repo.cancel_audit(session, audit_id)
        assert heartbeat.stopped.wait(2.0)


def test_a_cancel_interrupts_the_stage_between_progress_reports(ctx: WorkerContext) -> None:
    """The stage's thread gets AuditStopped within a heartbeat or two, even in a long step."""
    from synthaudit.worker.errors import AuditStopped

    audit_id = make_audit(ctx, status="running")
    started = time.monotonic()
    with pytest.raises(AuditStopped), Heartbeat(ctx, audit_id, "embed", attempt=1):
        with session_scope(ctx.sessions) as session:
            repo.cancel_audit(session, audit_id)
        while time.monotonic() - started < 10:  # a long computation that never reports progress
            sum(range(10_000))
    assert time.monotonic() - started < 2.0
    # A stage that ends before the interrupt lands is not hit afterwards.
    with Heartbeat(ctx, make_audit(ctx, status="running"), "embed", attempt=1):
        pass
    time.sleep(0.3)


def test_the_watchdog_fails_a_stage_past_its_time_limit(ctx: WorkerContext) -> None:
    audit_id = make_audit(ctx, status="running")
    heartbeat = Heartbeat(ctx, audit_id, "embed", attempt=1)
    heartbeat._started -= ctx.settings.stage_soft_time_limit_s + 1  # as if it had run that long
    heartbeat.beat()
    assert heartbeat.stopped.is_set()
    audit = audit_row(ctx, audit_id)
    assert audit.status == "failed" and "ran longer than its" in (audit.error or "")


def make_encoder(ctx: WorkerContext, status: str, seconds_since_sign_of_life: float) -> uuid.UUID:
    from synthaudit.app.core.tables import Encoder

    then = utcnow() - timedelta(seconds=seconds_since_sign_of_life)
    with session_scope(ctx.sessions) as session:
        encoder = Encoder(dataset_ids=[], config={}, status=status, progress=0.0, created_at=then)
        encoder.heartbeat_at = then if status == "running" else None
        session.add(encoder)
        session.flush()
        return encoder.id


def test_the_sweep_resends_exactly_the_orphaned_encoder_jobs_once(ctx: WorkerContext) -> None:
    from synthaudit.worker.recovery import sweep_encoders

    dead_running = make_encoder(ctx, "running", 60)
    fresh_running = make_encoder(ctx, "running", 1)
    lost_queued = make_encoder(ctx, "queued", 60)
    waiting_queued = make_encoder(ctx, "queued", 60)
    make_encoder(ctx, "succeeded", 60)
    sent: list[uuid.UUID] = []
    queue = f'{{"headers": {{"id": "{waiting_queued}-encoder"}}}}'.encode()
    assert sorted(sweep_encoders(ctx, sent.append, lambda: queue)) == sorted([dead_running, lost_queued])
    assert sorted(sent) == sorted([dead_running, lost_queued]) and fresh_running not in sent
    assert sweep_encoders(ctx, sent.append, lambda: queue) == [] and len(sent) == 2  # refreshed: once
    # Without a view of the queue, a queued job may be waiting its turn: only dead running ones go.
    dead_again, queued_again = make_encoder(ctx, "running", 60), make_encoder(ctx, "queued", 60)
    assert sweep_encoders(ctx, sent.append, lambda: None) == [dead_again] and queued_again not in sent
