"""The embedded runner: with no broker configured, the API process runs audits itself, one at a time.

A single background thread takes audit ids from a queue and runs the same stage functions the Celery
tasks run (worker/pipeline.py). Audits left queued or running by a previous process are resumed on
start (finished stages are skipped, their artifacts are on disk), and so are encoder pretraining and
checkpoint comparison jobs left queued or running. Retention purges run hourly; webhooks stalled in
`sending` by a dead process are sent again (checked every minute). Unexpected errors are logged as their type and stack only
(app.core.logs.log_unexpected): their messages may quote storage paths made from file names.
"""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable

from sqlalchemy.orm import Session, sessionmaker

from synthaudit.app.core import repository as repo
from synthaudit.app.core import retention
from synthaudit.app.core.config import Settings
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.logs import log_unexpected
from synthaudit.app.core.storage import Storage
from synthaudit.app.core.tables import ACTIVE_STATUSES
from synthaudit.worker.audit_failure import fail
from synthaudit.worker.comparison_jobs import run_comparison_job
from synthaudit.worker.context import WorkerContext
from synthaudit.worker.encoder_jobs import run_encoder_job
from synthaudit.worker.errors import TRANSIENT_ERRORS
from synthaudit.worker.pipeline import Outcome, execute_stage
from synthaudit.worker.recovery import resend_stalled_webhooks

log = logging.getLogger(__name__)
_STOP = object()
TRANSIENT_RETRIES = 5
PURGE_EVERY_S = 3600.0
WEBHOOK_CHECK_EVERY_S = 60.0


def _job_name(job: Callable[[], object]) -> str:
    """A job's function name (a functools.partial's too): never its arguments."""
    return str(getattr(getattr(job, "func", job), "__name__", "?"))


class EmbeddedRunner:
    """One worker thread, one audit at a time."""

    def __init__(self, ctx: WorkerContext) -> None:
        self.ctx = ctx
        self._queue: queue.Queue[object] = queue.Queue()
        self._thread: threading.Thread | None = None
        # -inf: the first housekeeping runs at once (time.monotonic() may be below an hour after a boot)
        self._last_purge = float("-inf")
        self._last_webhook_check = float("-inf")

    def start(self) -> None:
        """Start the thread and re-queue audits a previous process left unfinished."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._loop, name="synthaudit-runner", daemon=True)
        self._thread.start()
        with session_scope(self.ctx.sessions) as session:
            unfinished = repo.audits_in_status(session, ACTIVE_STATUSES)
        for audit_id in unfinished:
            self.submit(audit_id)
        if unfinished:
            log.info("embedded runner: resuming %d unfinished audit(s)", len(unfinished))
        self._resume_jobs()

    def _resume_jobs(self) -> None:
        """Queue again the encoder and comparison jobs a previous process left queued or running."""
        with session_scope(self.ctx.sessions) as session:
            encoders = repo.unfinished_encoders(session)
            comparisons = repo.unfinished_comparisons(session)
        for encoder_id in encoders:
            self.submit_call(functools.partial(run_encoder_job, self.ctx, encoder_id))
        for comparison_id in comparisons:
            self.submit_call(functools.partial(run_comparison_job, self.ctx, comparison_id))
        if encoders or comparisons:
            log.info(
                "embedded runner: resuming %d unfinished encoder and %d comparison job(s)",
                len(encoders),
                len(comparisons),
            )

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the thread to stop after the current stage (it is a daemon: the process may exit anyway)."""
        if self._thread is None:
            return
        self._queue.put(_STOP)
        self._thread.join(timeout)
        self._thread = None

    def submit(self, audit_id: uuid.UUID) -> None:
        self._queue.put(audit_id)

    def submit_call(self, job: Callable[[], object]) -> None:
        """Run another kind of job on the runner thread, after the audits queued before it."""
        self._queue.put(job)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _loop(self) -> None:
        self._housekeeping()  # a restart is when a dead process's leftovers are most likely
        while True:
            try:
                item = self._queue.get(timeout=60.0)
            except queue.Empty:
                self._housekeeping()
                continue
            if item is _STOP:
                return
            if callable(item):  # another kind of job (e.g. pretraining an encoder): same thread, in turn
                try:
                    item()
                except Exception as exc:  # noqa: BLE001 - type and stack only: the message may hold paths
                    log_unexpected(f"embedded runner: job {_job_name(item)}", exc)
                continue
            assert isinstance(item, uuid.UUID)
            try:
                self.run(item)
            except Exception as exc:  # noqa: BLE001 - the runner thread must survive anything
                log_unexpected(f"embedded runner: audit {item}", exc)
            self._housekeeping()

    def run(self, audit_id: uuid.UUID) -> None:
        """Every stage of one audit, in order, until one does not finish."""
        from synthaudit.models.stages import (
            STAGES,
        )  # the ML core loads when an audit runs, not with the API process

        for stage in STAGES:
            if self._run_stage(audit_id, stage) is not Outcome.DONE:
                return

    def _run_stage(self, audit_id: uuid.UUID, stage: str) -> Outcome:
        for attempt in range(TRANSIENT_RETRIES + 1):
            try:
                return execute_stage(self.ctx, audit_id, stage)
            except TRANSIENT_ERRORS as exc:
                log.warning("audit %s: %s at %s, retry %d", audit_id, type(exc).__name__, stage, attempt + 1)
                time.sleep(min(2.0**attempt, 30.0))
        fail(self.ctx, audit_id, f"stage {stage!r} could not reach the database; try again later")
        return Outcome.FAILED

    def _housekeeping(self) -> None:
        self._maybe_purge()
        self._maybe_resend_webhooks()

    def _maybe_resend_webhooks(self) -> None:
        if time.monotonic() - self._last_webhook_check < WEBHOOK_CHECK_EVERY_S:
            return
        self._last_webhook_check = time.monotonic()
        resend_stalled_webhooks(self.ctx)

    def _maybe_purge(self) -> None:
        if time.monotonic() - self._last_purge < PURGE_EVERY_S:
            return
        self._last_purge = time.monotonic()
        try:
            retention.purge_expired(self.ctx.sessions, self.ctx.storage, self.ctx.settings.retention_days)
        except Exception as exc:  # noqa: BLE001
            log_unexpected("embedded runner: retention purge", exc)


class EmbeddedDispatcher:
    """The Dispatcher of the embedded mode: the EmbeddedRunner thread in the API process."""

    mode = "embedded"

    def __init__(self, settings: Settings, sessions: sessionmaker[Session], storage: Storage) -> None:
        self.runner = EmbeddedRunner(WorkerContext(settings, sessions, storage))

    def start(self) -> None:
        self.runner.start()

    def stop(self) -> None:
        self.runner.stop()

    def submit(self, audit_id: uuid.UUID) -> None:
        self.runner.submit(audit_id)

    def submit_encoder(self, encoder_id: uuid.UUID) -> None:
        self.runner.submit_call(functools.partial(run_encoder_job, self.runner.ctx, encoder_id))

    def submit_comparison(self, comparison_id: uuid.UUID) -> None:
        self.runner.submit_call(functools.partial(run_comparison_job, self.runner.ctx, comparison_id))

    def cancel(self, audit_id: uuid.UUID) -> None:
        return None  # the runner checks the status on every progress write

    def check(self) -> None:
        if not self.runner.alive:
            raise RuntimeError("the embedded runner thread is not running")
