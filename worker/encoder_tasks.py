"""Celery task of the encoder pretraining job (worker/encoder_jobs.py); retried on transient errors only."""

from __future__ import annotations

import uuid

from celery import Task

from app.config import get_settings
from worker.celery_app import celery_app
from worker.encoder_jobs import run_encoder_job
from worker.pipeline import TRANSIENT_ERRORS
from worker.tasks import context


class EncoderTask(Task):
    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = 2
    retry_backoff_max = 300
    retry_jitter = True
    max_retries = get_settings().task_max_retries
    acks_late = True


@celery_app.task(name="synthaudit.pretrain_encoder", base=EncoderTask, bind=True)
def pretrain_encoder(self: Task, encoder_id: str) -> str:
    return run_encoder_job(context(), uuid.UUID(encoder_id))
