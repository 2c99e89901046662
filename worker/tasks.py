"""Celery tasks: one per audit stage, chained per audit; each takes the audit id and re-reads the row."""

from __future__ import annotations

import uuid

from celery import Task
from celery.exceptions import SoftTimeLimitExceeded

from synthaudit.app.core.jobs import PURGE_TASK, RECOVER_TASK, task_name
from synthaudit.app.core.retention import purge_expired
from synthaudit.worker.base import StageTask, context
from synthaudit.worker.celery_app import celery_app
from synthaudit.worker.pipeline import Outcome, execute_stage
from synthaudit.worker.recovery import celery_sweep
from synthaudit.worker.sharding import fan_out


def _stage_task(stage: str) -> Task:
    @celery_app.task(name=task_name(stage), base=StageTask, bind=True)
    def run(self: Task, audit_id: str, attempt: int | None = None) -> str:
        if stage == "embed":  # a large generated set: embed + search as shards on every worker
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
    return [str(audit_id) for audit_id in celery_sweep(celery_app, context())]


@celery_app.task(name=PURGE_TASK)
def purge() -> tuple[int, int]:
    """Retention: remove audits and datasets older than RETENTION_DAYS."""
    ctx = context()
    return purge_expired(ctx.sessions, ctx.storage, ctx.settings.retention_days)
