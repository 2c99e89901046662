"""The encoder pretraining job: re-read the row, pretrain on the datasets' images, record the provenance.

Run by the embedded runner's thread (EmbeddedRunner.submit_call) or the Celery task
`synthaudit.pretrain_encoder` (worker/encoder_tasks.py). The row is the job's truth; a thread refreshes
its heartbeat while it runs (the recovery sweep re-sends a job whose heartbeat stops, worker/recovery.py);
the weights are written atomically to STORAGE_DIR/encoders/<id>.safetensors.
"""

from __future__ import annotations

import logging
import time
import uuid

from app.db import session_scope
from app.tables import ACTIVE_STATUSES, Encoder, utcnow
from worker.pipeline import TRANSIENT_ERRORS, WorkerContext
from worker.recovery import EncoderHeartbeat

log = logging.getLogger(__name__)


class EncoderStopped(Exception):
    """The encoder was cancelled or deleted while it trained."""


def _set(ctx: WorkerContext, encoder_id: uuid.UUID, only_active: bool = True, **values: object) -> bool:
    with session_scope(ctx.sessions) as session:
        encoder = session.get(Encoder, encoder_id)
        if encoder is None or (only_active and encoder.status not in ACTIVE_STATUSES):
            return False
        for key, value in values.items():
            setattr(encoder, key, value)
        return True


def run_encoder_job(ctx: WorkerContext, encoder_id: uuid.UUID) -> str:
    """Pretrain one registered encoder; returns its final status (or 'stopped')."""
    from models.pretrained import EncoderSpec, pretrain_encoder

    with session_scope(ctx.sessions) as session:
        encoder = session.get(Encoder, encoder_id)
        if encoder is None or encoder.status not in ACTIVE_STATUSES:
            return "stopped"
        encoder.status, encoder.started_at, encoder.progress = "running", utcnow(), 0.0
        encoder.heartbeat_at = utcnow()
        sources = [ctx.storage.dataset_images(uuid.UUID(d)) for d in encoder.dataset_ids]
        spec = EncoderSpec(**{**encoder.config, "device": "auto"})
    out = ctx.storage.encoder_weights(encoder_id)
    last = [0.0]

    def progress(fraction: float) -> None:
        now = time.monotonic()
        if now - last[0] < ctx.settings.progress_interval_s:
            return
        last[0] = now
        try:
            alive = _set(ctx, encoder_id, progress=round(min(99.9, 100 * fraction), 1))
        except TRANSIENT_ERRORS:
            return
        if not alive:
            raise EncoderStopped

    try:
        with EncoderHeartbeat(ctx, encoder_id):
            info = pretrain_encoder(sources, out, spec, on_progress=progress)
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
    except Exception as exc:
        if type(exc).__name__ == "SoftTimeLimitExceeded":
            return _fail(
                ctx, encoder_id, "pretraining ran past the time limit; use a smaller pretrain_images_seen"
            )
        log.exception("encoder %s: unexpected %s", encoder_id, type(exc).__name__)
        return _fail(
            ctx, encoder_id, f"internal error ({type(exc).__name__}); the worker logs have the details"
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
