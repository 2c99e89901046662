"""Hand audits to whoever runs them: a Celery chain (distributed) or the in-process runner (embedded)."""

from __future__ import annotations

import logging
import uuid
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from app.config import Settings
from app.services.storage import Storage

log = logging.getLogger(__name__)


class Dispatcher(Protocol):
    """What the audit service needs from the job runner."""

    mode: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def submit(self, audit_id: uuid.UUID) -> None: ...

    def cancel(self, audit_id: uuid.UUID) -> None: ...

    def check(self) -> None:
        """Raise when jobs cannot be run right now (readiness)."""


def stage_task_ids(audit_id: uuid.UUID) -> list[str]:
    """Deterministic Celery task ids of an audit's stages (so cancel can revoke them)."""
    from models.stages import STAGES

    return [f"{audit_id}-{stage}" for stage in STAGES]


def send_chain(
    celery: Any,
    settings: Settings,
    audit_id: uuid.UUID,
    from_stage: str | None = None,
    attempt: int = 1,
    retry_policy: dict[str, float] | None = None,
) -> None:
    """Send the Celery chain of an audit's stages, from `from_stage` on, as dispatch `attempt`.

    The first dispatch is attempt 1 (task ids `<audit>-<stage>`); a recovery re-dispatch
    (worker/recovery.py) sends attempt n > 1 (`<audit>-<stage>-a<n>`), and tasks of older attempts
    then stop at once.
    """
    from celery import chain

    from models.stages import STAGES
    from worker.celery_app import stage_priority

    first = STAGES.index(from_stage) if from_stage else 0
    suffix = "" if attempt == 1 else f"-a{attempt}"
    steps = [
        celery.signature(
            f"synthaudit.{stage}",
            args=(str(audit_id), attempt),
            immutable=True,
            task_id=f"{audit_id}-{stage}{suffix}",
            queue=settings.celery_queue,
            priority=stage_priority(i, len(STAGES)),
        )
        for i, stage in enumerate(STAGES)
        if i >= first
    ]
    chain(*steps).apply_async(**({"retry_policy": retry_policy} if retry_policy else {}))


API_PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


class CeleryDispatcher:
    """Distributed mode: one chained task per stage on the Redis broker."""

    mode = "celery"

    def __init__(self, settings: Settings) -> None:
        from worker.celery_app import create_celery

        self.settings = settings
        self.celery = create_celery(settings)

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def submit(self, audit_id: uuid.UUID) -> None:
        # A request does not wait a minute for a broker that is down: it answers 503 after ~3 s.
        send_chain(self.celery, self.settings, audit_id, retry_policy=API_PUBLISH_RETRY)

    def cancel(self, audit_id: uuid.UUID) -> None:
        """Revoke the stages not yet started; a running stage sees the status and stops itself."""
        self.celery.control.revoke(stage_task_ids(audit_id))

    def check(self) -> None:
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)


class EmbeddedDispatcher:
    """Embedded mode: the worker/runner.py thread in this process."""

    mode = "embedded"

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], storage: Storage) -> None:
        from worker.pipeline import WorkerContext
        from worker.runner import EmbeddedRunner

        self.runner = EmbeddedRunner(WorkerContext(settings, sessions, storage))

    def start(self) -> None:
        self.runner.start()

    def stop(self) -> None:
        self.runner.stop()

    def submit(self, audit_id: uuid.UUID) -> None:
        self.runner.submit(audit_id)

    def cancel(self, audit_id: uuid.UUID) -> None:
        return None  # the runner checks the status on every progress write

    def check(self) -> None:
        if not self.runner.alive:
            raise RuntimeError("the embedded runner thread is not running")


def make_dispatcher(settings: Settings, sessions: sessionmaker[Session], storage: Storage) -> Dispatcher:
    """Celery when CELERY_BROKER_URL is set, else the embedded runner."""
    if settings.embedded:
        return EmbeddedDispatcher(settings, sessions, storage)
    return CeleryDispatcher(settings)
