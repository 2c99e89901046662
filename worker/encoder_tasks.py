"""Celery task of the encoder pretraining job (worker/encoder_jobs.py); retried on transient errors only."""

from __future__ import annotations

import uuid

from celery import Task

from synthaudit.app.core.jobs import ENCODER_TASK
from synthaudit.worker.base import RetriedTask, context
from synthaudit.worker.celery_app import celery_app
from synthaudit.worker.encoder_jobs import run_encoder_job


@celery_app.task(name=ENCODER_TASK, base=RetriedTask, bind=True)
def pretrain_encoder(self: Task, encoder_id: str) -> str:
    """Pretrain one registered encoder (worker/encoder_jobs.py); returns its final status."""
    return run_encoder_job(context(), uuid.UUID(encoder_id))
