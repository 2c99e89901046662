"""The base classes of the Celery tasks (retries, ending the audit when a stage task fails) and the
per-process worker context they run with."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from celery import Task
from celery.exceptions import TimeLimitExceeded

from synthaudit.app.core.config import get_settings
from synthaudit.worker.audit_failure import fail
from synthaudit.worker.context import WorkerContext
from synthaudit.worker.errors import TRANSIENT_ERRORS

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
