"""Fault injection on the real thing: Celery workers killed with SIGKILL in every stage, Redis and Postgres
restarted in the middle of an audit, a cancel, a stuck stage. Each disturbed audit must end `succeeded`
with exactly the CSV of an undisturbed run (or, for cancel and the stuck stage, stop within seconds
with a clear message).

The workers are real `celery worker` processes (prefork pool, as deployed); a test-only wrapper
(hold_worker.py) lets a stage pause after its real work began, so the kill lands mid-stage. Postgres
and Redis are private instances of the real servers (see conftest.py), restarted for real.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from synthaudit.models.stages import STAGES

pytestmark = pytest.mark.timeout(600)

# "paper" pretrains an MAE (so there is a pretrain stage to kill), tiny enough to take seconds on a CPU.
CONFIG = {"method": "paper", "image_size": 32, "pretrain_images_seen": 120, "seed": 0, "batch_size": 32}
FAST = {"method": "pixels", "image_size": 32, "seed": 0}  # where no pretrain stage is needed
SLOW = {**CONFIG, "pretrain_images_seen": 50_000_000}
FINAL = ("succeeded", "failed", "cancelled")
REPORT = (
    Path(os.environ.get("SYNTHAUDIT_FAULT_REPORT", "")) if os.environ.get("SYNTHAUDIT_FAULT_REPORT") else None
)
EVENTS: list[dict[str, object]] = []


def record(kind: str, stage: str | None, outcome: str) -> None:
    """Count what was injected and how the audit ended (docs/reliability.md quotes these)."""
    EVENTS.append({"fault": kind, "stage": stage, "outcome": outcome})
    if REPORT is not None:
        REPORT.write_text(json.dumps(EVENTS, indent=1))


def get(client, path: str):  # type: ignore[no-untyped-def]
    """GET that tolerates the API answering 503 while its database is down."""
    import httpx

    try:
        return client.get(path)
    except httpx.HTTPError:
        return None


def wait_audit(client, audit_id: str, until=FINAL, timeout: float = 240.0) -> dict:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    body: dict = {}
    while time.monotonic() < deadline:
        response = get(client, f"/v1/audits/{audit_id}")
        if response is not None and response.status_code == 200:
            body = response.json()
            if body["status"] in until:
                return body
        time.sleep(0.25)
    raise AssertionError(f"audit {audit_id} not {until} after {timeout} s: {body}")


def wait_file(path: Path, timeout: float = 240.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path.name} did not appear within {timeout} s")
        time.sleep(0.02)


def start_audit(client, datasets: tuple[str, str], config: dict = CONFIG) -> str:  # type: ignore[no-untyped-def]
    real, generated = datasets
    response = client.post(
        "/v1/audits", json={"real_dataset_id": real, "generated_dataset_id": generated, "config": config}
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def results_csv(client, audit_id: str) -> str:  # type: ignore[no-untyped-def]
    response = client.get(f"/v1/audits/{audit_id}/results.csv")
    assert response.status_code == 200, response.text
    return str(response.text)


@pytest.fixture(scope="module")
def datasets(faults, membership_set, helpers) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    import httpx

    with httpx.Client(base_url=faults.api_url, timeout=60.0, headers=faults.headers) as client:
        return helpers.upload_set(client, membership_set[0])


def undisturbed(faults, datasets, config: dict) -> str:  # type: ignore[no-untyped-def]
    """The CSV of an undisturbed run of the config on the same data, through the same service."""
    import httpx

    faults.hold()
    if not faults.live_workers():
        faults.start_worker()
    with httpx.Client(base_url=faults.api_url, timeout=60.0, headers=faults.headers) as client:
        audit_id = start_audit(client, datasets, config)
        done = wait_audit(client, audit_id)
        assert done["status"] == "succeeded", done
        return results_csv(client, audit_id)


@pytest.fixture(scope="module")
def baseline(faults, datasets) -> str:  # type: ignore[no-untyped-def]
    return undisturbed(faults, datasets, CONFIG)


@pytest.fixture(scope="module")
def fast_baseline(faults, datasets) -> str:  # type: ignore[no-untyped-def]
    return undisturbed(faults, datasets, FAST)


def test_sigkill_of_the_stage_process_in_every_stage(faults, fault_client, datasets, baseline) -> None:
    """The pool process running a stage dies (what the OOM killer does): Celery redelivers at once."""
    worker = faults.live_workers()[0] if faults.live_workers() else faults.start_worker()
    faults.hold(*STAGES)
    audit_id = start_audit(fault_client, datasets)
    workdir = faults.workdir(audit_id)
    for stage in STAGES:
        marker = workdir / f".held-{stage}"
        wait_file(marker)
        pid = int(marker.read_text())
        assert pid != worker.popen.pid  # the pool child, not the worker's main process
        assert not (workdir / _artifact(stage)).exists()  # really mid-stage
        os.kill(pid, signal.SIGKILL)
    faults.hold()
    done = wait_audit(fault_client, audit_id)
    assert done["status"] == "succeeded", done
    assert results_csv(fault_client, audit_id) == baseline
    assert worker.popen.poll() is None  # the worker itself lived on
    assert worker.output().count("signal 9") >= len(STAGES)
    for stage in STAGES:
        record("SIGKILL of the pool process running the stage", stage, done["status"])


def test_sigkill_of_the_whole_worker_in_every_stage(faults, fault_client, datasets, baseline) -> None:
    """The whole worker dies (machine lost): its message stays unacknowledged in Redis; the next worker's
    recovery sweep sees the stale heartbeat and re-dispatches the audit from the stage it was in."""
    if not faults.live_workers():
        faults.start_worker()
    faults.hold(*STAGES)
    audit_id = start_audit(fault_client, datasets)
    workdir = faults.workdir(audit_id)
    for stage in STAGES:
        wait_file(workdir / f".held-{stage}")
        assert not (workdir / _artifact(stage)).exists()
        for worker in faults.live_workers():
            worker.kill_group()
        faults.start_worker()
    faults.hold()
    done = wait_audit(fault_client, audit_id)
    assert done["status"] == "succeeded", done
    assert results_csv(fault_client, audit_id) == baseline
    logs = "".join(w.output() for w in faults.workers)
    assert logs.count(f"audit {audit_id}: orphaned") >= len(STAGES)
    for stage in STAGES:
        record("SIGKILL of the whole worker (main process and pool)", stage, done["status"])


def test_redis_restart_during_an_audit(faults, fault_client, datasets, fast_baseline) -> None:
    """Redis restarts without persistence: the running stage's message and a queued audit's message are
    lost. The running stage finishes and sends its successor to the new Redis; the sweep finds the queued
    audit has no message any more and sends it again."""
    if not faults.live_workers():
        faults.start_worker()
    faults.hold("embed")
    running = start_audit(fault_client, datasets, FAST)
    wait_file(faults.workdir(running) / ".held-embed")
    queued = start_audit(fault_client, datasets, FAST)
    assert wait_audit(fault_client, queued, until=("queued",))["status"] == "queued"
    faults.redis.restart()
    (faults.workdir(running) / ".release-embed").touch()
    faults.hold()
    for audit_id in (running, queued):
        done = wait_audit(fault_client, audit_id)
        assert done["status"] == "succeeded", done
        assert results_csv(fault_client, audit_id) == fast_baseline
    record("Redis restart (running audit, mid-stage)", "embed", "succeeded")
    record("Redis restart (queued audit lost its message)", None, "succeeded")
    assert fault_client.get("/readyz").status_code == 200


def test_postgres_restart_during_an_audit(faults, fault_client, datasets, fast_baseline) -> None:
    """Postgres goes down mid-stage and comes back: progress and heartbeats are skipped, the stage's
    closing writes are retried with backoff, the API answers 503 meanwhile, and the audit finishes."""
    if not faults.live_workers():
        faults.start_worker()
    faults.hold("search")
    audit_id = start_audit(fault_client, datasets, FAST)
    wait_file(faults.workdir(audit_id) / ".held-search")
    faults.postgres.stop()
    try:
        down = fault_client.get(f"/v1/audits/{audit_id}")
        assert down.status_code == 503, down.text
        assert down.headers["content-type"].startswith("application/problem+json")
        assert fault_client.get("/readyz").status_code == 503
        (faults.workdir(audit_id) / ".release-search").touch()
        time.sleep(3.0)  # the stage ends while the database is away
    finally:
        faults.postgres.start()
    faults.hold()
    done = wait_audit(fault_client, audit_id)
    assert done["status"] == "succeeded", done
    assert results_csv(fault_client, audit_id) == fast_baseline
    assert fault_client.get("/readyz").status_code == 200
    record("Postgres stopped mid-stage, started again 3 s later", "search", "succeeded")


def test_cancel_stops_a_running_stage_within_seconds(faults, fault_client, datasets) -> None:
    if not faults.live_workers():
        faults.start_worker()
    faults.hold()
    audit_id = start_audit(fault_client, datasets, SLOW)
    wait_audit(fault_client, audit_id, until=(*FINAL, "running"))
    deadline = time.monotonic() + 120
    while fault_client.get(f"/v1/audits/{audit_id}").json()["stage"] != "pretrain":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    started = time.monotonic()
    assert fault_client.post(f"/v1/audits/{audit_id}/cancel").json()["status"] == "cancelled"
    line = f"audit {audit_id}: stopped during pretrain"
    while not any(line in w.output() for w in faults.workers):
        assert time.monotonic() - started < 10, "the running stage did not stop within 10 s"
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    assert elapsed < 5.0, elapsed
    assert fault_client.get(f"/v1/audits/{audit_id}").json()["status"] == "cancelled"
    record(f"cancel during pretrain (stopped in {elapsed:.1f} s)", "pretrain", "cancelled")


def test_sigkill_of_the_whole_worker_during_encoder_pretraining(faults, fault_client, datasets) -> None:
    """A registered encoder's pretraining job loses its worker (machine lost): the next worker's sweep
    sees its progress writes stop and re-sends the job, which ends `succeeded` with its weights."""
    for worker in faults.live_workers():
        worker.stop()
    faults.hold()
    faults.start_worker()
    body = {"dataset_ids": list(datasets), "config": {"image_size": 32, "pretrain_images_seen": 8_000}}
    response = fault_client.post("/v1/encoders", json=body)
    assert response.status_code == 202, response.text
    encoder_id = response.json()["id"]
    deadline = time.monotonic() + 120
    while True:  # into the pretraining loop, past decoding
        state = fault_client.get(f"/v1/encoders/{encoder_id}").json()
        if state["status"] == "running" and state["progress"] >= 15:
            break
        assert state["status"] in ("queued", "running") and time.monotonic() < deadline, state
        time.sleep(0.1)
    for worker in faults.live_workers():
        worker.kill_group()
    faults.start_worker()
    deadline = time.monotonic() + 240
    while (state := fault_client.get(f"/v1/encoders/{encoder_id}").json())["status"] in ("queued", "running"):
        assert time.monotonic() < deadline, state
        time.sleep(0.25)
    assert state["status"] == "succeeded" and state["n_images"] == 60, state
    assert fault_client.get(f"/v1/encoders/{encoder_id}/weights").status_code == 200
    logs = "".join(w.output() for w in faults.workers)
    assert f"encoder {encoder_id}: orphaned" in logs
    record("SIGKILL of the whole worker during encoder pretraining", None, state["status"])


def test_a_stuck_stage_fails_with_a_clear_error(faults, fault_client, datasets) -> None:
    """A stage that makes no headway past STAGE_SOFT_TIME_LIMIT_S fails the audit with a message, also on
    the solo pool, where Celery cannot enforce time limits (the heartbeat's watchdog does)."""
    for worker in faults.live_workers():
        worker.stop()
    faults.start_worker(
        pool="solo",
        extra_env={
            "STAGE_SOFT_TIME_LIMIT_S": "3",
            "STAGE_TIME_LIMIT_S": "6",
            "BROKER_VISIBILITY_TIMEOUT_S": "60",
        },
    )
    faults.hold("embed")  # held for good: never released
    audit_id = start_audit(fault_client, datasets, {"method": "pixels", "image_size": 32})
    done = wait_audit(fault_client, audit_id, timeout=120)
    assert done["status"] == "failed" and done["stage"] == "embed", done
    assert "ran longer than its 3 s time limit" in done["error"]
    faults.hold()
    record("stage stuck past its time limit (solo pool)", "embed", "failed with a clear error")


def _artifact(stage: str) -> str:
    from synthaudit.models.stages import ARTIFACTS

    return ARTIFACTS[stage]
