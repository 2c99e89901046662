"""The Celery application: Redis broker, late acks, one task at a time, limits above the longest stage.

Start a worker with `synthaudit worker` (= `celery -A worker.celery_app worker --concurrency 1 -Q audits`).
"""

from __future__ import annotations

import logging

from celery import Celery
from celery.signals import after_setup_logger, after_setup_task_logger, worker_init, worker_ready

from synthaudit.app.core.config import Settings, get_settings
from synthaudit.app.core.jobs import PURGE_TASK, broker_options
from synthaudit.app.core.logs import configure_log_format
from synthaudit.worker.recovery import install

log = logging.getLogger(__name__)


def create_celery(settings: Settings) -> Celery:
    """The workers' Celery app: the tasks, limits, retries and the recovery timer (the API sends with
    app/core/jobs.celery_client, never with this)."""
    celery = Celery(
        "synthaudit",
        broker=settings.celery_broker_url or "memory://",
        include=[
            "synthaudit.worker.tasks",
            "synthaudit.worker.encoder_tasks",
            "synthaudit.worker.comparison_tasks",
            "synthaudit.worker.sharding",
        ],
    )
    celery.conf.update(
        **broker_options(settings),
        # Only the chord of a sharded embed + search (worker/sharding.py) keeps results, to count its shards.
        result_backend=result_backend(settings),
        result_expires=settings.broker_visibility_timeout_s,
        task_acks_late=True,  # a task lost with its worker is redelivered (stages are idempotent)
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,  # long GPU tasks: never hoard messages
        task_soft_time_limit=settings.stage_soft_time_limit_s,
        task_time_limit=settings.stage_time_limit_s,
        broker_connection_retry_on_startup=True,
        broker_connection_max_retries=None,  # a worker waits out a broker restart instead of exiting
        # Keep running a stage while the broker is away (its result is still good; recovery covers a
        # message the broker lost), and retry sending the next stage for up to ~1 min.
        worker_cancel_long_running_tasks_on_connection_loss=False,
        task_publish_retry=True,
        task_publish_retry_policy={
            "max_retries": 20,
            "interval_start": 0.5,
            "interval_step": 1.0,
            "interval_max": 5.0,
        },
        worker_hijack_root_logger=True,
        beat_schedule={
            "purge-expired": {"task": PURGE_TASK, "schedule": 3600.0, "options": {"expires": 3000}},
        },
    )
    install(celery)  # the orphaned-audit sweep on every worker's timer
    return celery


def result_backend(settings: Settings) -> str | None:
    """CELERY_RESULT_BACKEND, else the broker when it is Redis (chords need a backend), else none."""
    if settings.celery_result_backend:
        return settings.celery_result_backend
    if settings.celery_broker_url.startswith(("redis://", "rediss://")):
        return settings.celery_broker_url
    return None


celery_app = create_celery(get_settings())
app = celery_app  # `celery -A worker.celery_app` finds either name


@worker_init.connect
def _check_schema(**_: object) -> None:
    """Refuse to start a worker against a database that is not migrated to head."""
    from synthaudit.app.core.migrations import (
        ensure_schema,
    )  # alembic loads in the worker that checks, not on import

    settings = get_settings()
    ensure_schema(settings.database_url, auto_upgrade=settings.is_sqlite)


@worker_ready.connect
def _say_mode(**_: object) -> None:
    """One line saying what the worker serves (logging is set up by now, unlike at worker_init)."""
    log.info("synthaudit worker: %s", get_settings().describe_mode())


@after_setup_logger.connect
@after_setup_task_logger.connect
def _log_format(logger: logging.Logger, **_: object) -> None:
    """The API's log format in the worker too: audit ids on every line, JSON with LOG_FORMAT=json."""
    configure_log_format(get_settings().log_format, logger)
