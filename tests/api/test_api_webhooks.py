"""Completion webhooks against a real HTTP receiver on 127.0.0.1 (listed in WEBHOOK_ALLOWED_HOSTS): one
POST per finished audit (succeeded, failed, cancelled), retried with backoff when the receiver fails,
signed by the Standard Webhooks scheme with the audit's own secret (issue 14 #9)."""

from __future__ import annotations

import base64
import hmac
import json
import shutil
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from standardwebhooks import Webhook
from webhook_receiver import Receiver

PIXELS = {"method": "pixels", "image_size": 32}


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver(fail_first=True, path="/hooks/synthaudit")  # 500 to an audit's first call, then 200
    yield r
    r.stop()


@pytest.fixture(scope="module")
def hooked_api(
    tmp_path_factory: pytest.TempPathFactory, receiver: Receiver, proc_tools: Any
) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("webhooks")
    env = proc_tools.clean_env(
        SYNTHAUDIT_HOME=str(home),
        PROGRESS_INTERVAL_S="0.2",
        BIND_HOST="127.0.0.1",
        WEBHOOK_ALLOWED_HOSTS=receiver.allowed,
        WEBHOOK_BACKOFF_S="0.2",
        WEBHOOK_MAX_ATTEMPTS="4",
    )
    server = proc_tools.start_server(env, home / "api.log", home / "storage")
    yield server
    server.proc.stop()


def signed(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """The Standard Webhooks check of a received call, by the reference package, at the call's own
    timestamp (Webhook.verify also refuses timestamps 5 minutes off now; test_webhook_signing checks that)."""
    stamp = datetime.fromtimestamp(int(headers["webhook-timestamp"]), tz=UTC)
    expected = Webhook(secret).sign(headers["webhook-id"], stamp, body.decode())
    return any(hmac.compare_digest(expected, sig) for sig in headers["webhook-signature"].split())


def wait_calls(receiver: Receiver, audit_id: str, n: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while len(receiver.of(audit_id)) < n:
        assert time.monotonic() < deadline, f"{len(receiver.of(audit_id))} webhook call(s) for {audit_id}"
        time.sleep(0.1)
    return receiver.of(audit_id)


def test_webhooks_fire_once_per_finished_audit_signed_and_retried(
    hooked_api, receiver, membership_set, helpers
) -> None:
    import httpx

    client = httpx.Client(base_url=hooked_api.url, timeout=60.0)
    real, generated = helpers.upload_set(client, membership_set[0])
    base = {"real_dataset_id": real, "generated_dataset_id": generated, "webhook_url": receiver.url}
    bad = client.post("/v1/audits", json={**base, "webhook_url": "ftp://example.org/x"})
    assert bad.status_code == 422 and "webhook_url" in bad.json()["detail"]

    ok = client.post("/v1/audits", json={**base, "config": {"method": "pixels", "image_size": 32}}).json()
    silent = client.post(
        "/v1/audits",
        json={
            **{k: v for k, v in base.items() if k != "webhook_url"},
            "config": {"method": "pixels", "image_size": 32},
        },
    ).json()
    slow = client.post(
        "/v1/audits",
        json={**base, "config": {"method": "paper", "image_size": 32, "pretrain_images_seen": 50_000_000}},
    ).json()
    queued = client.post("/v1/audits", json={**base, "config": {"method": "pixels", "seed": 1}}).json()
    assert helpers.wait(client, ok["id"])["status"] == "succeeded"
    helpers.wait(client, slow["id"], check=lambda a: a["stage"] == "pretrain")
    assert client.post(f"/v1/audits/{queued['id']}/cancel").status_code == 200  # cancelled while queued
    assert client.post(f"/v1/audits/{slow['id']}/cancel").status_code == 200  # cancelled while running
    assert helpers.wait(client, silent["id"])["status"] == "succeeded"

    # A failing audit: its images vanish behind the service's back.
    real2, generated2 = helpers.upload_set(client, membership_set[0])
    shutil.rmtree(Path(hooked_api.storage) / "datasets" / real2)
    failing = client.post(
        "/v1/audits",
        json={
            "real_dataset_id": real2,
            "generated_dataset_id": generated2,
            "webhook_url": receiver.url + "?audit=failing",
        },
    ).json()
    assert helpers.wait(client, failing["id"])["status"] == "failed"

    # Each webhook has its own secret, shown in the POST's answer only (issue 14 #9).
    secrets = {a["id"]: a["webhook_secret"] for a in (ok, slow, queued, failing)}
    assert all(s.startswith("whsec_") and len(base64.b64decode(s[6:])) == 32 for s in secrets.values())
    assert len(set(secrets.values())) == 4 and silent["webhook_secret"] is None
    assert all(client.get(f"/v1/audits/{i}").json()["webhook_secret"] is None for i in secrets)

    expected = {
        ok["id"]: "succeeded",
        slow["id"]: "cancelled",
        queued["id"]: "cancelled",
        failing["id"]: "failed",
    }
    for audit_id, status in expected.items():
        calls = wait_calls(receiver, audit_id, 2)
        assert [c["answered"] for c in calls] == [500, 200]  # retried after the receiver failed
        assert calls[0]["body"] == calls[1]["body"]  # the same delivery: same body, same webhook-id
        payload = json.loads(calls[0]["body"])
        for call in calls:
            body, headers = call["body"], {k.lower(): v for k, v in call["headers"].items()}
            assert headers["webhook-id"] == payload["delivery_id"]
            assert abs(int(headers["webhook-timestamp"]) - call["at"]) <= 60  # stamped per attempt
            assert signed(secrets[audit_id], headers, body)
            assert not any(signed(o, headers, body) for i, o in secrets.items() if i != audit_id)
            redated = {**headers, "webhook-timestamp": str(int(headers["webhook-timestamp"]) + 600)}
            assert not signed(secrets[audit_id], redated, body)  # a replay cannot be re-dated
            assert "x-synthaudit-signature" not in headers  # the shared-secret scheme is gone
            assert headers["content-type"] == "application/json"
            assert headers["x-synthaudit-event"] == "audit.finished"
        assert payload["status"] == status and payload["audit_id"] == audit_id
        if status == "succeeded":
            assert payload["counts"]["real"] == 20 and payload["links"]["report"].endswith("/report")
        if status == "failed":
            assert "input files are missing" in payload["error"]
            assert calls[0]["path"].endswith("?audit=failing")
        deadline = time.monotonic() + 10
        while client.get(f"/v1/audits/{audit_id}").json()["webhook_status"] != "delivered":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    time.sleep(1.5)  # nothing more arrives: once per audit
    for audit_id in expected:
        assert len(receiver.of(audit_id)) == 2
    assert receiver.of(silent["id"]) == []
    client.close()


def test_deliver_gives_up_after_the_bounded_attempts() -> None:
    from synthaudit.app.core.net_guard import parse_allowlist
    from synthaudit.app.core.webhook_signing import new_secret
    from synthaudit.app.core.webhooks import deliver

    waits: list[float] = []
    result = deliver(
        "http://127.0.0.1:9/nothing-listens",
        {"audit_id": "x"},
        new_secret(),
        allowlist=parse_allowlist("127.0.0.1:9"),
        max_attempts=4,
        backoff_s=1.0,
        timeout_s=2.0,
        sleep=waits.append,
    )
    assert not result.delivered and result.attempts == 4 and result.last_error
    assert len(waits) == 3 and all(0.8 * 2**i <= w <= 1.2 * 2**i for i, w in enumerate(waits))  # 1, 2, 4 s


def test_remote_submit_prints_the_webhook_secret_once(hooked_api, receiver, membership_set, capsys) -> None:
    """`synthaudit remote submit --webhook-url` shows the secret the service shows only once; it verifies
    the delivery that follows."""
    from synthaudit.app.cli import main

    root, _ = membership_set
    argv = ["remote", "--url", hooked_api.url, "submit", "--real", str(root / "real")]
    argv += ["--generated", str(root / "generated"), "--method", "pixels", "--image-size", "32"]
    assert main([*argv, "--webhook-url", receiver.url + "?via=cli"]) == 0
    printed = capsys.readouterr().out
    audit_id = printed.split("audit ", 1)[1].split()[0]
    secret = printed.split("webhook secret (shown once): ", 1)[1].split()[0]
    calls = wait_calls(receiver, audit_id, 2)
    for call in calls:
        assert signed(secret, {k.lower(): v for k, v in call["headers"].items()}, call["body"])
    assert main([*argv]) == 0 and "webhook secret" not in capsys.readouterr().out  # none without a webhook


def test_the_secret_is_shown_again_only_to_an_idempotent_repeat(
    hooked_api, receiver, membership_set, helpers
) -> None:
    """A client that lost the answer repeats the request with its Idempotency-Key and gets the same
    secret; the audit itself (GET, listing) never shows it."""
    import httpx

    client = httpx.Client(base_url=hooked_api.url, timeout=60.0)
    real, generated = helpers.upload_set(client, membership_set[0])
    body = {"real_dataset_id": real, "generated_dataset_id": generated, "webhook_url": receiver.url}
    body["config"] = {"method": "pixels", "image_size": 32}
    key = {"Idempotency-Key": f"lost-answer-{time.monotonic_ns()}"}
    first = client.post("/v1/audits", json=body, headers=key)
    again = client.post("/v1/audits", json=body, headers=key)
    assert first.status_code == 202 and again.headers.get("Idempotent-Replayed") == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again.json()["webhook_secret"] == first.json()["webhook_secret"]
    assert first.json()["webhook_secret"].startswith("whsec_")
    assert client.get(f"/v1/audits/{first.json()['id']}").json()["webhook_secret"] is None
    listed = client.get("/v1/audits", params={"limit": 200}).json()["items"]
    assert listed and all(a["webhook_secret"] is None for a in listed)
    wait_calls(receiver, first.json()["id"], 2)
    client.close()


def test_a_celery_worker_signs_with_the_audits_secret_and_keeps_to_the_allowlist(
    distributed_env, redis_url, tenant_keys, receiver, membership_set, helpers, tmp_path, proc_tools
) -> None:
    """The distributed mode: the Celery worker that ends the audit sends its webhook (Postgres holds the
    secret), through the same guard; the API refuses an internal URL there too."""
    import httpx

    Proc, bearer, start_server = proc_tools.Proc, proc_tools.bearer, proc_tools.start_server

    env = {
        **distributed_env,
        "CELERY_QUEUE": f"synthaudit-hooks-{uuid.uuid4().hex[:8]}",
        "WEBHOOK_ALLOWED_HOSTS": receiver.allowed,
        "WEBHOOK_BACKOFF_S": "0.2",
    }
    argv = [sys.executable, "-m", "celery", "-A", "synthaudit.worker.celery_app", "worker", "--pool", "solo"]
    argv += ["-Q", env["CELERY_QUEUE"], "--loglevel", "INFO", "--without-gossip", "--without-mingle"]
    argv += ["-n", f"hooks-{uuid.uuid4().hex[:6]}@%h"]
    worker = Proc("celery worker", argv, env, tmp_path / "celery.log")
    server = None
    try:
        worker.wait_for(lambda: " ready." in worker.output(), 90, "'ready' in its log")
        server = start_server(env, tmp_path / "api.log", Path(env["STORAGE_DIR"]))
        client = httpx.Client(base_url=server.url, timeout=60.0, headers=bearer(tenant_keys["a"]))
        real, generated = helpers.upload_set(client, membership_set[0])
        base = {"real_dataset_id": real, "generated_dataset_id": generated, "config": PIXELS}
        refused = client.post("/v1/audits", json={**base, "webhook_url": "http://10.0.0.1/hook"})
        assert refused.status_code == 422 and refused.json()["detail"].startswith("webhook_url: ")
        audit = client.post("/v1/audits", json={**base, "webhook_url": receiver.url + "?via=celery"}).json()
        assert helpers.wait(client, audit["id"])["status"] == "succeeded"
        calls = wait_calls(receiver, audit["id"], 2)
        for call in calls:
            headers = {k.lower(): v for k, v in call["headers"].items()}
            assert signed(audit["webhook_secret"], headers, call["body"])
        assert "webhook delivered after 2 attempt(s)" in worker.output()  # sent by the worker
        client.close()
    finally:
        if server is not None:
            server.proc.stop()
        worker.stop()
