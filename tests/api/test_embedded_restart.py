"""What an embedded server killed with SIGKILL leaves behind, and what its restart picks up again: a
webhook stalled in `sending` is sent again (same delivery id), a queued encoder pretraining job and a
queued comparison run; and retention purges a registered encoder's weights and a comparison's files but
keeps their provenance and table."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from sqlalchemy import update
from synthetic_sets import make_membership_set

from synthaudit.app.core.db import make_engine, make_session_factory
from synthaudit.app.core.storage import Storage
from synthaudit.app.core.tables import Audit, Encoder, utcnow

TINY_ENCODER = {"image_size": 32, "pretrain_images_seen": 64, "seed": 5}
SLOW_AUDIT = {"method": "paper", "image_size": 32, "pretrain_images_seen": 50_000_000}


class HangingReceiver:
    """Holds the first POST open until released (its sender dies meanwhile); answers 200 afterwards."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.first_arrived, self.release = threading.Event(), threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.bodies.append(body)
                if len(receiver.bodies) == 1:
                    receiver.first_arrived.set()
                    receiver.release.wait(60)
                try:
                    self.send_response(200)
                    self.end_headers()
                except OSError:
                    pass  # the sender is gone

            def log_message(self, *args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def receiver() -> Iterator[HangingReceiver]:
    r = HangingReceiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("restart-set")
    make_membership_set(root, n_used=4, n_unused=4, n_fresh_generated=8, size=32, seed=7)
    return root


def embedded(proc_tools: Any, home: Path, allowed: str = "") -> Any:
    """An embedded server on `home`; `allowed`: its WEBHOOK_ALLOWED_HOSTS (a loopback receiver)."""
    env = proc_tools.clean_env(
        WEBHOOK_ALLOWED_HOSTS=allowed,
        SYNTHAUDIT_HOME=str(home),
        PROGRESS_INTERVAL_S="0.2",
        BIND_HOST="127.0.0.1",
        WEBHOOK_TIMEOUT_S="30",
        WEBHOOK_MAX_ATTEMPTS="1",
    )
    return proc_tools.start_server(env, home / f"api-{time.monotonic_ns()}.log", home / "storage")


def kill(server: Any) -> None:
    server.proc.popen.kill()
    server.proc.popen.wait(10)
    server.proc.stop()


def database(home: Path):  # type: ignore[no-untyped-def]
    """An engine on the embedded server's database (the URL the settings derive from its home)."""
    from synthaudit.app.core.config import Settings

    return make_engine(Settings(synthaudit_home=home).database_url)


def poll(get, check, timeout: float = 180.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while True:
        body = get()
        if check(body):
            return body
        assert time.monotonic() < deadline, body
        time.sleep(0.2)


def test_a_webhook_whose_sender_died_is_sent_again_after_restart(
    tmp_path: Path, tiny_set: Path, receiver: HangingReceiver, helpers, proc_tools
) -> None:
    allowed = f"127.0.0.1:{receiver.server.server_address[1]}"
    server = embedded(proc_tools, tmp_path, allowed)
    client = httpx.Client(base_url=server.url, timeout=60.0)
    real, generated = helpers.upload_set(client, tiny_set)
    body = {
        "real_dataset_id": real,
        "generated_dataset_id": generated,
        "webhook_url": receiver.url,
        "config": {"method": "pixels", "image_size": 32},
    }
    audit_id = client.post("/v1/audits", json=body).json()["id"]
    assert helpers.wait(client, audit_id)["status"] == "succeeded"
    assert receiver.first_arrived.wait(60)
    assert client.get(f"/v1/audits/{audit_id}").json()["webhook_status"] == "sending"
    kill(server)  # dies while the receiver still holds its POST
    receiver.release.set()

    engine = database(tmp_path)
    try:
        with engine.begin() as conn:  # stand-in for waiting out twice the longest delivery
            then = utcnow() - timedelta(hours=1)
            stalled = update(Audit).where(Audit.id == uuid.UUID(audit_id))
            conn.execute(stalled.values(webhook_claimed_at=then))
        server = embedded(proc_tools, tmp_path, allowed)
        client = httpx.Client(base_url=server.url, timeout=60.0)
        poll(
            lambda: client.get(f"/v1/audits/{audit_id}").json(),
            lambda a: a["webhook_status"] == "delivered",
            timeout=60,
        )
        assert len(receiver.bodies) == 2
        first, second = (json.loads(b) for b in receiver.bodies)
        assert first["delivery_id"] == second["delivery_id"]  # the receiver's idempotency key
        assert second["status"] == "succeeded" and second["audit_id"] == audit_id

        # A claim younger than the delivery window belongs to a live sender: it is left alone.
        from synthaudit.app.core.webhooks import resend_stalled

        with engine.begin() as conn:
            conn.execute(
                update(Audit)
                .where(Audit.id == uuid.UUID(audit_id))
                .values(webhook_status="sending", webhook_claimed_at=utcnow())
            )
        settings = SimpleNamespace(webhook_timeout_s=30.0, webhook_max_attempts=1, webhook_backoff_s=2.0)
        assert resend_stalled(make_session_factory(engine), settings, background=False) == []
        assert len(receiver.bodies) == 2
    finally:
        engine.dispose()
        kill(server)


def test_a_queued_encoder_job_runs_after_a_restart_and_retention_purges_its_weights(
    tmp_path: Path, tiny_set: Path, helpers, proc_tools
) -> None:
    server = embedded(proc_tools, tmp_path)
    client = httpx.Client(base_url=server.url, timeout=60.0)
    real, generated = helpers.upload_set(client, tiny_set)
    base = {"real_dataset_id": real, "generated_dataset_id": generated}
    slow = client.post("/v1/audits", json={**base, "config": SLOW_AUDIT}).json()
    helpers.wait(client, slow["id"], check=lambda a: a["stage"] == "pretrain")
    encoder = client.post(
        "/v1/encoders", json={"dataset_ids": [real, generated], "config": TINY_ENCODER}
    ).json()
    assert encoder["status"] == "queued"  # behind the slow audit on the one runner thread
    kill(server)

    server = embedded(proc_tools, tmp_path)
    try:
        client = httpx.Client(base_url=server.url, timeout=60.0)
        assert client.post(f"/v1/audits/{slow['id']}/cancel").status_code == 200
        url = f"/v1/encoders/{encoder['id']}"
        done = poll(lambda: client.get(url).json(), lambda e: e["status"] not in ("queued", "running"))
        assert done["status"] == "succeeded", done
        weights = Path(server.storage) / "encoders" / f"{encoder['id']}.safetensors"
        assert weights.exists() and client.get(f"{url}/weights").status_code == 200

        # Retention: the weights are derived patient data; the row stays as provenance.
        from synthaudit.app.core.retention import purge_expired

        engine = database(tmp_path)
        try:
            with engine.begin() as conn:
                then = utcnow() - timedelta(days=40)
                conn.execute(
                    update(Encoder).where(Encoder.id == uuid.UUID(encoder["id"])).values(created_at=then)
                )
            purge_expired(make_session_factory(engine), Storage(Path(server.storage)), 30)
        finally:
            engine.dispose()
        assert not weights.exists()
        purged = client.get(url).json()
        assert purged["purged_at"] and purged["data_hash"] == done["data_hash"]
        gone = client.get(f"{url}/weights")
        assert gone.status_code == 410 and "purged" in gone.json()["detail"]
        assert gone.headers["content-type"].startswith("application/problem+json")
        reuse = client.post(
            "/v1/audits", json={**base, "encoder_id": encoder["id"], "config": {"method": "paper"}}
        )
        assert reuse.status_code == 422 and "purged" in reuse.json()["detail"], reuse.text
    finally:
        kill(server)


def test_a_queued_comparison_runs_after_a_restart_and_retention_purges_its_files(
    tmp_path: Path, tiny_set: Path, helpers, proc_tools
) -> None:
    from synthaudit.app.core.tables import Comparison

    server = embedded(proc_tools, tmp_path)
    client = httpx.Client(base_url=server.url, timeout=60.0)
    real, generated = helpers.upload_set(client, tiny_set)
    slow = client.post(
        "/v1/audits", json={"real_dataset_id": real, "generated_dataset_id": generated, "config": SLOW_AUDIT}
    ).json()
    helpers.wait(client, slow["id"], check=lambda a: a["stage"] == "pretrain")
    checkpoints = [{"dataset_id": generated, "name": name} for name in ("step-1", "step-2")]
    body = {"real_dataset_id": real, "generated": checkpoints, "config": {"method": "pixels"}}
    comparison = client.post("/v1/comparisons", json=body).json()
    assert comparison["status"] == "queued"  # behind the slow audit on the one runner thread
    kill(server)

    server = embedded(proc_tools, tmp_path)
    try:
        client = httpx.Client(base_url=server.url, timeout=60.0)
        assert client.post(f"/v1/audits/{slow['id']}/cancel").status_code == 200
        url = f"/v1/comparisons/{comparison['id']}"
        done = poll(lambda: client.get(url).json(), lambda c: c["status"] not in ("queued", "running"))
        assert done["status"] == "succeeded", done
        assert "resuming 0 unfinished encoder and 1 comparison job(s)" in server.proc.output()
        assert client.get(f"{url}/comparison.csv").status_code == 200

        # Retention: the files (image ids, the report) go; the table and the summary stay.
        from synthaudit.app.core.retention import purge_expired

        engine = database(tmp_path)
        try:
            with engine.begin() as conn:
                then = utcnow() - timedelta(days=40)
                conn.execute(
                    update(Comparison)
                    .where(Comparison.id == uuid.UUID(comparison["id"]))
                    .values(created_at=then)
                )
            purge_expired(make_session_factory(engine), Storage(Path(server.storage)), 30)
        finally:
            engine.dispose()
        assert not (Path(server.storage) / "comparisons" / comparison["id"]).exists()
        purged = client.get(url).json()
        assert purged["purged_at"] and purged["checkpoints"] == done["checkpoints"]
        for path in ("comparison.csv", "report", "checkpoints/step-1/results.csv"):
            gone = client.get(f"{url}/{path}")
            assert gone.status_code == 410 and "purged" in gone.json()["detail"], path
            assert gone.headers["content-type"].startswith("application/problem+json")
    finally:
        kill(server)
