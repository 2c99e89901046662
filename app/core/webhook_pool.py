"""A bounded pool for webhook deliveries: at most WEBHOOK_MAX_CONCURRENCY sender threads per process and
at most WEBHOOK_MAX_QUEUED deliveries waiting for one, however many audits finish at once.

The threads are daemons started on demand (a process that exits does not wait for a receiver: the
delivery it leaves in `sending` is sent again by the stalled-webhook sweep). A pool belongs to the
process that made it: a forked child (a Celery prefork worker) makes its own.
"""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class DeliveryPool:
    """`submit` runs a job on one of `workers` threads, or returns False when `queued` jobs already wait."""

    def __init__(self, workers: int, queued: int) -> None:
        self.workers = max(1, int(workers))
        self.capacity = self.workers + max(0, int(queued))  # running + waiting
        self._slots = threading.BoundedSemaphore(self.capacity)
        self._jobs: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()
        self.pid = os.getpid()

    def submit(self, job: Callable[[], None]) -> bool:
        """Queue the job; False (nothing queued) when `workers` jobs run and `queued` more wait."""
        if not self._slots.acquire(blocking=False):
            return False
        with self._lock:
            self._jobs.put(job)
            if self._idle < self._jobs.qsize() and len(self._threads) < self.workers:
                thread = threading.Thread(
                    target=self._work, name=f"synthaudit-webhook-{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                self._idle += 1
                thread.start()
        return True

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            with self._lock:
                self._idle -= 1
            try:
                job()
            except Exception as exc:  # noqa: BLE001 - a job must not kill its thread
                log.warning("webhook delivery job failed (%s)", type(exc).__name__)
            finally:
                with self._lock:
                    self._idle += 1
                self._slots.release()

    @property
    def threads(self) -> int:
        """How many sender threads this pool started (never more than `workers`)."""
        return len(self._threads)


_pool: DeliveryPool | None = None
_pool_lock = threading.Lock()


def delivery_pool(workers: int, queued: int) -> DeliveryPool:
    """This process's pool (made on first use, and again in a forked child)."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool.pid != os.getpid():
            _pool = DeliveryPool(workers, queued)
        return _pool
