"""Jobs as both tiers see them: the Dispatcher protocol, task names and ids, and a send-only Celery client.

The web tier sends tasks by *name* through `CeleryDispatcher` and never imports `worker`; the workers
(worker/celery_app.py) register the tasks under the same names with the same broker options. The
embedded runner's dispatcher lives in worker/runner.py; app/composition.py picks one of the two.
"""

from __future__ import annotations

import uuid
from typing import Any, Protocol

from synthaudit.app.core.config import Settings

ENCODER_TASK = "synthaudit.pretrain_encoder"
COMPARISON_TASK = "synthaudit.run_comparison"
RECOVER_TASK = "synthaudit.recover"
PURGE_TASK = "synthaudit.purge"
API_PUBLISH_RETRY = {"max_retries": 3, "interval_start": 0.2, "interval_step": 0.5, "interval_max": 1.0}


class Dispatcher(Protocol):
    """What the services need from the job runner."""

    mode: str

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def submit(self, audit_id: uuid.UUID) -> None: ...

    def submit_encoder(self, encoder_id: uuid.UUID) -> None: ...

    def submit_comparison(self, comparison_id: uuid.UUID) -> None: ...

    def cancel(self, audit_id: uuid.UUID) -> None: ...

    def check(self) -> None:
        """Raise when jobs cannot be run right now (readiness)."""


def stages() -> list[str]:
    """The audit's stages in order (models/stages/)."""
    from synthaudit.models.stages import STAGES

    return list(STAGES)


def task_name(stage: str) -> str:
    """The Celery task name of an audit stage."""
    return f"synthaudit.{stage}"


def stage_task_ids(audit_id: uuid.UUID) -> list[str]:
    """Deterministic Celery task ids of an audit's stages (so cancel can revoke them)."""
    return [f"{audit_id}-{stage}" for stage in stages()]


def stage_priority(stage_index: int, n_stages: int) -> int:
    """Redis priority of a stage task: decide 0 (first served) ... decode n_stages - 1."""
    return n_stages - 1 - stage_index


def broker_options(settings: Settings) -> dict[str, Any]:
    """Celery settings a sender and a worker must share (serialisation, queue, Redis priorities)."""
    return {
        "task_serializer": "json",
        "accept_content": ["json"],
        "task_ignore_result": True,  # the database row, not a result backend, is the job's truth
        "task_default_queue": settings.celery_queue,
        "broker_transport_options": {
            # Redis redelivers an unacknowledged task after visibility_timeout: above the longest stage.
            "visibility_timeout": settings.broker_visibility_timeout_s,
            # 0 (highest) .. 9: later stages outrank earlier ones (see stage_priority), so a worker
            # finishes the audit it started before it begins the next one.
            "priority_steps": list(range(10)),
        },
    }


def celery_client(settings: Settings) -> Any:
    """A Celery app that only sends tasks by name: no task modules, no signals, no worker set-up."""
    from celery import Celery

    client = Celery(
        "synthaudit-client", broker=settings.celery_broker_url or "memory://", set_as_current=False
    )
    client.conf.update(broker_options(settings))
    return client


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

    names = stages()
    first = names.index(from_stage) if from_stage else 0
    suffix = "" if attempt == 1 else f"-a{attempt}"
    steps = [
        celery.signature(
            task_name(stage),
            args=(str(audit_id), attempt),
            immutable=True,
            task_id=f"{audit_id}-{stage}{suffix}",
            queue=settings.celery_queue,
            priority=stage_priority(i, len(names)),
        )
        for i, stage in enumerate(names)
        if i >= first
    ]
    options: dict[str, Any] = {"retry_policy": retry_policy} if retry_policy else {}
    chain(*steps).apply_async(**options)


def send_encoder_task(
    celery: Any, settings: Settings, encoder_id: uuid.UUID, retry_policy: dict[str, float] | None = None
) -> None:
    """The Celery message of an encoder job (also what the recovery sweep re-sends)."""
    celery.send_task(
        ENCODER_TASK,
        args=(str(encoder_id),),
        task_id=f"{encoder_id}-encoder",
        queue=settings.celery_queue,
        priority=9,  # after every stage of audits already started
        **({"retry_policy": retry_policy} if retry_policy else {}),
    )


def send_comparison_task(
    celery: Any, settings: Settings, comparison_id: uuid.UUID, retry_policy: dict[str, float] | None = None
) -> None:
    """The Celery message of a comparison job (also what the recovery sweep re-sends)."""
    celery.send_task(
        COMPARISON_TASK,
        args=(str(comparison_id),),
        task_id=f"{comparison_id}-comparison",
        queue=settings.celery_queue,
        priority=9,  # after every stage of audits already started
        **({"retry_policy": retry_policy} if retry_policy else {}),
    )


class CeleryDispatcher:
    """Distributed mode: one chained task per stage on the Redis broker, sent by name."""

    mode = "celery"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.celery = celery_client(settings)

    def start(self) -> None:
        return None

    def stop(self) -> None:
        return None

    def submit(self, audit_id: uuid.UUID) -> None:
        # A request does not wait a minute for a broker that is down: it answers 503 after ~3 s.
        send_chain(self.celery, self.settings, audit_id, retry_policy=API_PUBLISH_RETRY)

    def submit_encoder(self, encoder_id: uuid.UUID) -> None:
        send_encoder_task(self.celery, self.settings, encoder_id)

    def submit_comparison(self, comparison_id: uuid.UUID) -> None:
        send_comparison_task(self.celery, self.settings, comparison_id, retry_policy=API_PUBLISH_RETRY)

    def cancel(self, audit_id: uuid.UUID) -> None:
        """Revoke the stages not yet started; a running stage sees the status and stops itself."""
        self.celery.control.revoke(stage_task_ids(audit_id))

    def check(self) -> None:
        with self.celery.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=3)
