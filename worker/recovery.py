"""Job durability: the sweep that re-dispatches orphaned audits (their heartbeats: worker/heartbeat.py).

The database row is the job's truth, the broker only a delivery mechanism. Three ways a job can lose
its message, and what brings it back:

- the process running a stage dies (OOM kill, SIGKILL) but its worker lives: Celery redelivers at
  once (`task_acks_late` + `task_reject_on_worker_lost`);
- the whole worker dies (or its machine): its unacknowledged message would only come back after the
  broker's visibility timeout (hours); the audit's heartbeat goes stale instead, and the sweep
  re-dispatches it after ORPHAN_AFTER_S;
- the broker loses its data (Redis restarted without persistence) or the API died between committing
  an audit and sending it: no message waits for the audit any more; the sweep sees that and
  re-dispatches it.

Every re-dispatch bumps `audits.attempt` (compare-and-swap, so two sweeping workers never both send)
and the new tasks carry that attempt: a task of an older attempt (a late redelivery, a worker that
was only slow) stops at once instead of running the stage twice. Stages skip finished artifacts and
write atomically, so a re-run stage gives the same result as an undisturbed run.

The same sweep re-sends encoder pretraining and comparison jobs by the same rule (EncoderHeartbeat,
ComparisonHeartbeat), and sends again
the completion webhooks whose sending process died (left in `sending`).

The sweep runs in every Celery worker's main process (a timer, every RECOVERY_INTERVAL_S, see
`RecoveryStep`), and once as the `synthaudit.recover` task (for beat).
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from synthaudit.app.core import repository as repo
from synthaudit.app.core.config import get_settings
from synthaudit.app.core.db import make_session_factory, normalise_url, session_scope
from synthaudit.app.core.jobs import send_chain, send_comparison_task, send_encoder_task
from synthaudit.app.core.storage import Storage
from synthaudit.app.core.tables import Audit, Comparison, Encoder, utcnow
from synthaudit.app.core.webhooks import resend_stalled
from synthaudit.worker.context import WorkerContext

log = logging.getLogger(__name__)

Resend = Callable[[uuid.UUID, str, int], None]


def _as_aware(value: datetime) -> datetime:
    """A database time as an aware UTC datetime (SQLite returns naive ones)."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _last_sign_of_life(row: Any) -> datetime:
    """A job row's heartbeat, else its creation time."""
    return _as_aware(row.heartbeat_at or row.created_at)


def _orphans(
    ctx: Any, table: Any, waiting: Callable[[], bytes | None], *columns: Any
) -> tuple[list[Any], datetime]:
    """Queued or running rows of `table` (Audit, Encoder) with no sign of life (heartbeat, else creation)
    for ORPHAN_AFTER_S and no message waiting in the queue; without a view of the queue (waiting() is
    None) running ones only, since a queued one may be waiting its turn. Also returns the cut-off."""
    stale_before = utcnow() - timedelta(seconds=ctx.settings.orphan_after_s)
    with session_scope(ctx.sessions) as session:
        rows = repo.active_jobs(session, table, *columns)
    stale = [r for r in rows if _last_sign_of_life(r) < stale_before]
    if not stale:
        return [], stale_before
    queued = waiting()
    if queued is None:
        return [r for r in stale if r.status == "running"], stale_before
    return [r for r in stale if str(r.id).encode() not in queued], stale_before


def sweep(ctx: Any, resend: Resend, waiting: Callable[[], bytes | None]) -> list[uuid.UUID]:
    """Re-dispatch every active audit that nothing is working on; return their ids.

    An audit is orphaned when its last sign of life (heartbeat, else creation) is older than
    ORPHAN_AFTER_S and no message for it waits in the broker's queues. `waiting()` returns the raw
    bytes of the queued messages, or None when the broker cannot be inspected: then only running
    audits with a stale heartbeat are taken (a queued one may be waiting its turn).
    """
    from synthaudit.models.stages import (
        STAGES,
    )  # the ML core loads where it is used, not in every worker import

    orphans, _ = _orphans(ctx, Audit, waiting, Audit.stage, Audit.attempt)
    recovered: list[uuid.UUID] = []
    for row in orphans:
        attempt = int(row.attempt or 1) + 1
        with session_scope(ctx.sessions) as session:
            claimed = repo.claim_orphaned_audit(session, row.id, row.attempt, attempt)
        if not claimed:
            continue  # another sweeper took it, or it ended meanwhile
        stage = row.stage if row.status == "running" and row.stage in STAGES else STAGES[0]
        resend(row.id, stage, attempt)
        log.warning(
            "audit %s: orphaned (%s at %s, no sign of life for %.0f s); re-dispatched as attempt %d",
            row.id,
            row.status,
            row.stage or "-",
            ctx.settings.orphan_after_s,
            attempt,
        )
        recovered.append(row.id)
    return recovered


def sweep_encoders(
    ctx: Any, resend: Callable[[uuid.UUID], None], waiting: Callable[[], bytes | None]
) -> list[uuid.UUID]:
    """Re-send every encoder pretraining job that nothing is working on (the audits' rule, with the
    heartbeat of EncoderHeartbeat); return their ids."""
    return sweep_single_jobs(ctx, Encoder, "encoder", resend, waiting)


def sweep_comparisons(
    ctx: Any, resend: Callable[[uuid.UUID], None], waiting: Callable[[], bytes | None]
) -> list[uuid.UUID]:
    """Re-send every comparison job that nothing is working on (the rule of the encoders, with the
    heartbeat of ComparisonHeartbeat; the job resumes from its work folder); return their ids."""
    return sweep_single_jobs(ctx, Comparison, "comparison", resend, waiting)


def sweep_single_jobs(
    ctx: Any,
    table: type[Encoder] | type[Comparison],
    kind: str,
    resend: Callable[[uuid.UUID], None],
    waiting: Callable[[], bytes | None],
) -> list[uuid.UUID]:
    """Re-send the orphaned one-task jobs of `table` (claimed by their stale heartbeat); return their ids."""
    orphans, stale_before = _orphans(ctx, table, waiting)
    recovered: list[uuid.UUID] = []
    for row in orphans:
        with session_scope(ctx.sessions) as session:
            claimed = repo.claim_orphaned_job(session, table, row.id, stale_before)
        if not claimed:
            continue  # another sweeper took it, or it moved on meanwhile
        resend(row.id)
        log.warning(
            "%s %s: orphaned (%s, no sign of life for %.0f s); re-dispatched",
            kind,
            row.id,
            row.status,
            ctx.settings.orphan_after_s,
        )
        recovered.append(row.id)
    return recovered


def redis_waiting(broker_url: str, queue: str) -> Callable[[], bytes | None]:
    """`waiting()` for the Redis broker: the raw messages of the queue (every priority level)."""

    def waiting() -> bytes | None:
        try:
            client = redis.Redis.from_url(broker_url, socket_timeout=5, socket_connect_timeout=5)
            try:
                keys = [queue] + [f"{queue}\x06\x16{p}" for p in range(1, 10)]
                pipe = client.pipeline()
                for key in keys:
                    pipe.lrange(key, 0, -1)
                return b"\n".join(m for messages in pipe.execute() for m in messages)
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - no broker, no inspection: be conservative
            log.warning("recovery: cannot inspect the broker queue (%s)", type(exc).__name__)
            return None

    return waiting


def celery_sweep(celery: Any, ctx: Any) -> list[uuid.UUID]:
    """One sweep for the Celery deployment: inspect the Redis queue, re-send chains from the stage."""
    settings = ctx.settings
    waiting = (
        redis_waiting(settings.celery_broker_url, settings.celery_queue)
        if settings.celery_broker_url.startswith(("redis://", "rediss://", "unix://"))
        else (lambda: None)
    )

    def resend(audit_id: uuid.UUID, stage: str, attempt: int) -> None:
        send_chain(celery, settings, audit_id, from_stage=stage, attempt=attempt)

    recovered = sweep(ctx, resend, waiting)
    sweep_encoders(ctx, lambda encoder_id: send_encoder_task(celery, settings, encoder_id), waiting)
    sweep_comparisons(ctx, lambda job_id: send_comparison_task(celery, settings, job_id), waiting)
    resend_stalled_webhooks(ctx)
    return recovered


def resend_stalled_webhooks(ctx: Any) -> list[uuid.UUID]:
    """Webhooks whose sending process died (app/core/webhooks.py), sent again; never raises."""
    try:
        return resend_stalled(ctx.sessions, ctx.settings)
    except Exception as exc:  # noqa: BLE001 - the next sweep tries again
        log.warning("recovery: stalled webhooks not checked (%s)", type(exc).__name__)
        return []


def _step_class() -> type[Any]:
    """The worker bootstep that runs the sweep. Celery is imported here, not at the top: the embedded runner
    imports this module (resend_stalled_webhooks) in the API process, which never loads Celery."""
    from celery import bootsteps

    class RecoveryStep(bootsteps.StartStopStep):
        """Run the sweep on the worker's timer, in its main process (the children run tasks)."""

        requires = ("celery.worker.components:Timer",)

        def __init__(self, parent: Any, **kwargs: Any) -> None:
            super().__init__(parent, **kwargs)
            self.tref: Any = None
            self.ctx: Any = None

        def start(self, worker: Any) -> None:
            interval = get_settings().recovery_interval_s
            worker.timer.call_after(min(interval, 2.0), self.run, (worker,))
            self.tref = worker.timer.call_repeatedly(interval, self.run, (worker,))

        def stop(self, worker: Any) -> None:
            if self.tref is not None:
                self.tref.cancel()
                self.tref = None

        def run(self, worker: Any) -> None:
            try:
                if self.ctx is None:
                    self.ctx = _sweeper_context()
                celery_sweep(worker.app, self.ctx)
            except Exception as exc:  # noqa: BLE001 - never take the worker down; try again next time
                log.warning("recovery sweep failed (%s)", type(exc).__name__)

    return RecoveryStep


def _sweeper_context() -> WorkerContext:
    """A worker context whose engine holds no connection between sweeps (safe across pool forks)."""
    settings = get_settings()
    url = normalise_url(settings.database_url)
    connect_args = {"connect_timeout": 5} if url.startswith("postgresql") else {}
    engine = create_engine(url, poolclass=NullPool, hide_parameters=True, connect_args=connect_args)
    return WorkerContext(settings, make_session_factory(engine), Storage(settings.storage))


def install(celery: Any) -> None:
    """Add the sweep to the app's workers."""
    celery.steps["worker"].add(_step_class())
