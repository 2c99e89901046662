"""Celery tasks: one per audit stage, chained per audit; each takes the audit id and re-reads the row."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from app.core.config import get_settings
from app.core.jobs import PURGE_TASK, RECOVER_TASK, task_name
from worker.celery_app import celery_app
from worker.pipeline import TRANSIENT_ERRORS, Outcome, WorkerContext, execute_stage, fail

log = logging.getLogger(__name__)
_context: WorkerContext | None = None


def context() -> WorkerContext:
    """The per-process context (built lazily, i.e. after the worker forked)."""
    global _context
    if _context is None:
        _context = WorkerContext.from_settings(get_settings())
    return _context


class RetriedTask(Task):
    """Retries with exponential backoff and jitter, only for transient (database/broker) errors."""

    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = get_settings().task_max_retries
    acks_late = True


class StageTask(RetriedTask):
    """An audit stage: retried like every task, and the audit is ended when the retries run out."""

    def on_failure(self, exc: Exception, task_id: str, args: Any, kwargs: Any, einfo: Any) -> None:
        """Out of retries, past the hard time limit, or a bug outside the pipeline: end the audit."""
        log.error("task %s failed: %s", task_id, type(exc).__name__)
        try:
            fail(context(), uuid.UUID(str(args[0])), failure_message(self.name.rsplit(".", 1)[-1], exc))
        except Exception:  # noqa: BLE001 - the database may be the thing that is down
            log.warning("task %s: could not record the failure", task_id)


def failure_message(stage: str, exc: BaseException) -> str:
    """What the user reads when a stage task failed outside the pipeline's own handling."""
    settings = get_settings()
    if isinstance(exc, TimeLimitExceeded):
        return (
            f"stage {stage!r} ran past its hard time limit of {settings.stage_time_limit_s} s and was stopped"
        )
    if isinstance(exc, TRANSIENT_ERRORS):
        return (
            f"stage {stage!r} could not reach the database or broker after {settings.task_max_retries} "
            "retries; start the audit again later"
        )
    return (
        f"the worker could not run stage {stage!r} ({type(exc).__name__}); the worker logs have the details"
    )


def _stage_task(stage: str) -> Task:
    @celery_app.task(name=task_name(stage), base=StageTask, bind=True)
    def run(self: Task, audit_id: str, attempt: int | None = None) -> str:
        if stage == "embed":  # a large generated set: embed + search as shards on every worker
            from worker.sharding import fan_out

            sharded = fan_out(self, audit_id, attempt)
            if sharded is not None:
                return sharded
        outcome = execute_stage(
            context(), uuid.UUID(audit_id), stage, timeout_errors=(SoftTimeLimitExceeded,), attempt=attempt
        )
        if outcome is not Outcome.DONE:
            self.request.chain = None  # stopped or failed: the later stages have nothing to do
        return outcome.value

    return run


decode = _stage_task("decode")
pretrain = _stage_task("pretrain")
embed = _stage_task("embed")
search = _stage_task("search")
decide = _stage_task("decide")


@celery_app.task(name=RECOVER_TASK)
def recover() -> list[str]:
    """Re-dispatch orphaned audits (every worker also does this on its own timer: worker/recovery.py)."""
    from worker.recovery import celery_sweep

    return [str(audit_id) for audit_id in celery_sweep(celery_app, context())]


@celery_app.task(name=PURGE_TASK)
def purge() -> tuple[int, int]:
    """Retention: remove audits and datasets older than RETENTION_DAYS."""
    from app.core.retention import purge_expired

    ctx = context()
    return purge_expired(ctx.sessions, ctx.storage, ctx.settings.retention_days)
