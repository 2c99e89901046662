"""The encoder pretraining job: re-read the row, pretrain on the datasets' images, record the provenance.

Run by the embedded runner's thread (EmbeddedRunner.submit_call) or the Celery task
`synthaudit.pretrain_encoder` (worker/encoder_tasks.py). The row is the job's truth; a thread refreshes
its heartbeat while it runs (the recovery sweep re-sends a job whose heartbeat stops, worker/recovery.py);
the weights are written atomically to STORAGE_DIR/encoders/<id>.safetensors. A job that runs longer than
STAGE_SOFT_TIME_LIMIT_S fails with a message on every pool, the embedded runner's thread and Celery's solo
pool included (JobTimeLimit, worker/heartbeat.py; Celery's own soft limit on the prefork pool).
Unexpected errors are logged as their type and stack only (log_unexpected: messages may hold paths).
"""

from __future__ import annotations

import logging
import time
import uuid

from synthaudit.app.core import repository as repo
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.tables import ACTIVE_STATUSES, utcnow
from synthaudit.worker.context import WorkerContext
from synthaudit.worker.errors import TRANSIENT_ERRORS, EncoderStopped, unexpected_error
from synthaudit.worker.heartbeat import EncoderHeartbeat, JobTimeLimit

log = logging.getLogger(__name__)


class EncoderTimeLimitExceeded(BaseException):
    """The job ran longer than STAGE_SOFT_TIME_LIMIT_S (raised in its thread by JobTimeLimit, or at a
    progress report). A BaseException, so that no `except Exception` on the way swallows it."""


def time_limit_message(limit_s: float) -> str:
    """What a job stopped by its time limit records as its error."""
    return (
        f"pretraining ran longer than its {limit_s:g} s time limit (STAGE_SOFT_TIME_LIMIT_S); use a smaller "
        "pretrain_images_seen or ask the operator to raise the limit"
    )


def _set(ctx: WorkerContext, encoder_id: uuid.UUID, only_active: bool = True, **values: object) -> bool:
    with session_scope(ctx.sessions) as session:
        encoder = repo.get_encoder(session, encoder_id)
        if encoder is None or (only_active and encoder.status not in ACTIVE_STATUSES):
            return False
        for key, value in values.items():
            setattr(encoder, key, value)
        return True


def run_encoder_job(ctx: WorkerContext, encoder_id: uuid.UUID) -> str:
    """Pretrain one registered encoder; returns its final status (or 'stopped')."""
    from synthaudit.models.pretrained import (
        EncoderSpec,
        pretrain_encoder,
    )  # the ML core loads where a job runs

    with session_scope(ctx.sessions) as session:
        encoder = repo.get_encoder(session, encoder_id)
        if encoder is None or encoder.status not in ACTIVE_STATUSES:
            return "stopped"
        encoder.status, encoder.started_at, encoder.progress = "running", utcnow(), 0.0
        encoder.heartbeat_at = utcnow()
        sources = [ctx.storage.dataset_images(uuid.UUID(d)) for d in encoder.dataset_ids]
        spec = EncoderSpec(**{**encoder.config, "device": "auto"})
    out = ctx.storage.encoder_weights(encoder_id)
    last = [0.0]
    limit_s = ctx.settings.stage_soft_time_limit_s
    started = time.monotonic()

    def progress(fraction: float) -> None:
        now = time.monotonic()
        if now - started > limit_s:
            raise EncoderTimeLimitExceeded
        if now - last[0] < ctx.settings.progress_interval_s:
            return
        last[0] = now
        try:
            alive = _set(ctx, encoder_id, progress=round(min(99.9, 100 * fraction), 1))
        except TRANSIENT_ERRORS:
            return
        if not alive:
            raise EncoderStopped

    time_limit = JobTimeLimit(limit_s, EncoderTimeLimitExceeded, "synthaudit-encoder-time-limit")
    try:
        with EncoderHeartbeat(ctx, encoder_id), time_limit:
            info = pretrain_encoder(sources, out, spec, on_progress=progress)
    except EncoderTimeLimitExceeded:
        log.warning("encoder %s: passed its time limit of %s s", encoder_id, limit_s)
        return _fail(ctx, encoder_id, time_limit_message(limit_s))
    except EncoderStopped:
        out.unlink(missing_ok=True)
        log.info("encoder %s: stopped (cancelled or deleted)", encoder_id)
        return "stopped"
    except TRANSIENT_ERRORS:
        raise
    except FileNotFoundError:
        return _fail(ctx, encoder_id, "the datasets' files are missing (was a dataset deleted?)")
    except MemoryError:
        return _fail(ctx, encoder_id, "pretraining ran out of memory; use a smaller image_size")
    except ValueError as exc:  # ImageSetError, bad settings
        return _fail(ctx, encoder_id, str(exc))
    except Exception as exc:  # noqa: BLE001 - any other error fails the job (its type, never its message)
        return _fail(
            ctx, encoder_id, unexpected_error(f"encoder {encoder_id}", exc, time_limit_message(limit_s))
        )
    stored = _set(
        ctx,
        encoder_id,
        status="succeeded",
        progress=100.0,
        finished_at=utcnow(),
        error=None,
        data_hash=info.data_hash,
        n_images=info.n_images,
        final_loss=info.final_loss,
    )
    if not stored:
        out.unlink(missing_ok=True)
        return "stopped"
    log.info("encoder %s: succeeded (%d images, %d steps)", encoder_id, info.n_images, info.steps)
    return "succeeded"


def _fail(ctx: WorkerContext, encoder_id: uuid.UUID, message: str) -> str:
    log.info("encoder %s: failed", encoder_id)
    _set(ctx, encoder_id, status="failed", error=message, finished_at=utcnow())
    encoder_file_cleanup(ctx, encoder_id)
    return "failed"


def encoder_file_cleanup(ctx: WorkerContext, encoder_id: uuid.UUID) -> None:
    ctx.storage.encoder_weights(encoder_id).unlink(missing_ok=True)
