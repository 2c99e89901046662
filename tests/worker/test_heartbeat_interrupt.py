"""The heartbeat's interrupt never reaches a thread that the job is starting (CPython 3.11 gives the new
thread's state the job thread's id until it runs): a raise there killed a decoding pool's worker at its
start and left the stage waiting for it forever (a Celery worker hung so in CI)."""

from __future__ import annotations

import sys
import threading
import time

from synthaudit.worker.heartbeat import _Interrupter, starting_a_thread


class Stop(Exception):
    pass


def run_job(spawn_for_s: float, then_work_s: float) -> tuple[_Interrupter, threading.Thread, list[str]]:
    """A job thread that starts and joins threads for a while (as a decoding pool does), then computes."""
    interrupter, seen, ready = _Interrupter(), [], threading.Event()

    def job() -> None:
        interrupter.enter()
        ready.set()
        try:
            deadline = time.monotonic() + spawn_for_s
            while time.monotonic() < deadline:
                child = threading.Thread(target=lambda: None)
                child.start()
                child.join()
            deadline = time.monotonic() + then_work_s
            while time.monotonic() < deadline:
                sum(range(100))
            seen.append("finished")
        except Stop:
            seen.append("stopped")
        finally:
            interrupter.leave()

    thread = threading.Thread(target=job)
    thread.start()
    ready.wait()
    return interrupter, thread, seen


def test_the_interrupt_waits_until_the_job_is_out_of_thread_start(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    hit_children: list[object] = []
    monkeypatch.setattr(sys, "unraisablehook", hit_children.append)
    for _ in range(40):
        interrupter, thread, seen = run_job(spawn_for_s=0.2, then_work_s=2.0)
        time.sleep(0.001)
        interrupter.raise_soon(Stop, threading.Event())
        thread.join(timeout=5)
        assert not thread.is_alive(), "the job hung: a thread it started was killed at its start"
        assert seen == ["stopped"]  # delivered once the job left Thread.start
    assert hit_children == []


def test_a_job_outside_thread_start_is_interrupted_at_once() -> None:
    assert not starting_a_thread(threading.get_ident())
    interrupter, thread, seen = run_job(spawn_for_s=0.0, then_work_s=5.0)
    started = time.monotonic()
    assert interrupter.raise_once(Stop)
    thread.join(timeout=10)
    assert seen == ["stopped"] and time.monotonic() - started < 2
