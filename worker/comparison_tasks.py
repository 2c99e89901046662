"""Celery task of the checkpoint comparison job (worker/comparison_jobs.py); retried on transient errors only."""

from __future__ import annotations

import uuid

from celery import Task

from synthaudit.app.core.jobs import COMPARISON_TASK
from synthaudit.worker.base import RetriedTask, context
from synthaudit.worker.celery_app import celery_app
from synthaudit.worker.comparison_jobs import run_comparison_job


@celery_app.task(name=COMPARISON_TASK, base=RetriedTask, bind=True)
def run_comparison(self: Task, comparison_id: str) -> str:
    """Run one comparison (worker/comparison_jobs.py); returns its final status."""
    return run_comparison_job(context(), uuid.UUID(comparison_id))
