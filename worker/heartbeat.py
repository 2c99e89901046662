"""The threads that watch a running job: its row's heartbeat (which also notices a stop), and a time limit.

A heartbeat thread refreshes the job row's heartbeat column every HEARTBEAT_INTERVAL_S (the recovery
sweep, worker/recovery.py, re-sends a job whose heartbeat goes stale). When the row says stop (cancelled,
deleted, superseded) it sets `stopped` and, with `interrupt`, raises the stop exception in the working
thread, delivered at its next Python instruction (as Celery delivers its soft time limit): a long step
that reports no progress stops too. An exception raised but not delivered when the job ends is withdrawn.
"""

from __future__ import annotations

import ctypes
import logging
import sys
import threading
import time
import uuid
from abc import ABC, abstractmethod
from types import TracebackType
from typing import ClassVar, Self

from synthaudit.app.core import repository as repo
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.tables import Comparison
from synthaudit.worker.audit_failure import fail
from synthaudit.worker.context import WorkerContext
from synthaudit.worker.errors import AuditStopped, ComparisonStopped, EncoderStopped

log = logging.getLogger(__name__)


RETRY_RAISE_S = 0.01
_THREAD_START = threading.Thread.start.__code__


def starting_a_thread(thread_id: int) -> bool:
    """Whether the thread is inside Thread.start: the new thread's state then carries its id until it runs."""
    frame = sys._current_frames().get(thread_id)
    while frame is not None:
        if frame.f_code is _THREAD_START:
            return True
        frame = frame.f_back
    return False


def async_raise(thread_id: int, exc_type: type[BaseException] | None) -> int:
    """Raise exc_type in another thread at its next Python instruction (None withdraws a pending one);
    returns how many thread states took it."""
    return int(
        ctypes.pythonapi.PyThreadState_SetAsyncExc(
            ctypes.c_ulong(thread_id), ctypes.py_object(exc_type) if exc_type else None
        )
    )


class _Interrupter:
    """Raises an exception once into the thread that entered a watch, and never after that thread left."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._target: int | None = None  # the thread running the job
        self.raised = False

    def enter(self) -> None:
        """The calling thread is the one to interrupt."""
        self._target = threading.get_ident()

    def raise_once(self, exc_type: type[BaseException]) -> bool:
        """Raise exc_type in the target thread, unless it left already or was interrupted before; False
        when it must be tried again.

        A thread that the target is starting carries the target's id until it runs (CPython 3.11 creates
        its state in the parent and PyThreadState_SetAsyncExc takes the newest state of that id): the
        raise would kill the new thread (a decoding pool's worker, say) at its start and the job would wait
        for it forever. So no raise while the target is inside Thread.start; one that reached two states
        anyway (later CPythons) is withdrawn, as CPython's documentation says; both are tried again.
        """
        with self._lock:
            if self._target is None or self.raised:
                return True
            if starting_a_thread(self._target):
                return False
            reached = async_raise(self._target, exc_type)
            if reached > 1:
                async_raise(self._target, None)
                return False
            self.raised = reached == 1
            return True

    def raise_soon(self, exc_type: type[BaseException], done: threading.Event) -> None:
        """raise_once, tried again every RETRY_RAISE_S while it must be and the job has not ended."""
        while not self.raise_once(exc_type):
            if done.wait(RETRY_RAISE_S):
                return

    def leave(self) -> None:
        """The target thread leaves: withdraw an exception raised but not delivered yet."""
        with self._lock:
            self._target, pending = None, self.raised
        if pending:
            async_raise(threading.get_ident(), None)


class RowHeartbeat(ABC):
    """While a job runs: a thread calls `beat()` at once and then every HEARTBEAT_INTERVAL_S; once a beat
    sets `stopped` the thread ends, raising `stop_error` in the job's thread first when `interrupt`."""

    stop_error: ClassVar[type[BaseException]]

    def __init__(self, ctx: WorkerContext, label: str, thread_name: str, interrupt: bool) -> None:
        self.ctx, self.label, self.interrupt = ctx, label, interrupt
        self.stopped = threading.Event()  # set when the job should stop (at its next progress report)
        self._thread_name = thread_name
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._interrupter = _Interrupter()

    @abstractmethod
    def beat(self) -> None:
        """One refresh of the row's heartbeat; sets `stopped` when the row says the job should stop."""

    def __enter__(self) -> Self:
        self._interrupter.enter()
        self._thread = threading.Thread(target=self._run, name=self._thread_name, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        self._interrupter.leave()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        interval = self.ctx.settings.heartbeat_interval_s
        wait = 0.0  # the first beat at once, then one per interval
        while not self._done.wait(wait):
            wait = interval
            try:
                self.beat()
            except Exception as exc:  # noqa: BLE001 - the database may be down: keep working, retry later
                log.warning("%s: heartbeat not written (%s)", self.label, type(exc).__name__)
            if self.stopped.is_set():
                if self.interrupt:
                    self._interrupter.raise_soon(self.stop_error, self._done)
                return


class AuditHeartbeat(RowHeartbeat):
    """An audit stage's heartbeat: notices when the audit is no longer this attempt's to run (cancelled,
    deleted, failed, superseded), and fails it with a clear message once the stage outlives
    STAGE_SOFT_TIME_LIMIT_S (a watchdog that works with every pool, also where Celery cannot enforce time
    limits). Interrupts the stage with AuditStopped."""

    stop_error = AuditStopped

    def __init__(
        self, ctx: WorkerContext, audit_id: uuid.UUID, stage: str, attempt: int | None, interrupt: bool = True
    ) -> None:
        super().__init__(ctx, f"audit {audit_id}", f"synthaudit-heartbeat-{stage}", interrupt)
        self.audit_id, self.stage, self.attempt = audit_id, stage, attempt
        self._started = time.monotonic()

    def beat(self) -> None:
        """One heartbeat (and the time-limit watchdog)."""
        limit = self.ctx.settings.stage_soft_time_limit_s
        if time.monotonic() - self._started > limit:
            fail(
                self.ctx,
                self.audit_id,
                f"stage {self.stage!r} ran longer than its {limit} s time limit; use a smaller "
                "pretraining budget (pretrain_images_seen) or ask the operator to raise the limit",
            )
            log.warning("audit %s: stage %s passed its time limit", self.audit_id, self.stage)
            self.stopped.set()
            return
        with session_scope(self.ctx.sessions) as session:
            alive = repo.beat_audit(session, self.audit_id, self.attempt)
        if not alive:
            self.stopped.set()


class EncoderHeartbeat(RowHeartbeat):
    """An encoder pretraining job's heartbeat (imports, decoding and long steps write no progress for a
    while). It does not interrupt by default: the job notices a cancel at its next progress report."""

    stop_error = EncoderStopped

    def __init__(self, ctx: WorkerContext, encoder_id: uuid.UUID, interrupt: bool = False) -> None:
        super().__init__(ctx, f"encoder {encoder_id}", "synthaudit-encoder-heartbeat", interrupt)
        self.encoder_id = encoder_id

    def beat(self) -> None:
        """One heartbeat of a running encoder job."""
        with session_scope(self.ctx.sessions) as session:
            alive = repo.beat_encoder(session, self.encoder_id)
        if not alive:
            self.stopped.set()


class ComparisonHeartbeat(RowHeartbeat):
    """A comparison job's heartbeat: a cancel or delete interrupts the job with ComparisonStopped (a stage of
    one checkpoint may run long between progress reports), as an audit stage's heartbeat does."""

    stop_error = ComparisonStopped

    def __init__(self, ctx: WorkerContext, comparison_id: uuid.UUID, interrupt: bool = True) -> None:
        super().__init__(ctx, f"comparison {comparison_id}", "synthaudit-comparison-heartbeat", interrupt)
        self.comparison_id = comparison_id

    def beat(self) -> None:
        """One heartbeat of a running comparison."""
        with session_scope(self.ctx.sessions) as session:
            alive = repo.beat_job(session, Comparison, self.comparison_id)
        if not alive:
            self.stopped.set()


class JobTimeLimit:
    """Raise `error` in the thread that entered this context once `limit_s` has passed (delivered at its
    next Python instruction, as Celery delivers its soft time limit); withdrawn if the job ends first."""

    def __init__(self, limit_s: float, error: type[BaseException], thread_name: str) -> None:
        self.limit_s, self.error = limit_s, error
        self._done = threading.Event()
        self._interrupter = _Interrupter()
        self._thread = threading.Thread(target=self._watch, name=thread_name, daemon=True)

    @property
    def expired(self) -> bool:
        """Whether the limit passed while the job ran (and `error` was raised in its thread)."""
        return self._interrupter.raised

    def __enter__(self) -> Self:
        self._interrupter.enter()
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._done.set()
        self._interrupter.leave()
        self._thread.join(timeout=10)

    def _watch(self) -> None:
        if not self._done.wait(self.limit_s):
            self._interrupter.raise_soon(self.error, self._done)
