"""SSRF through `webhook_url` (issue 14 #8) and one thread per webhook delivery (#15): embedded servers
and HTTP receivers on 127.0.0.1, reached for real. A receiver is only ever reached when the server's
WEBHOOK_ALLOWED_HOSTS lists it."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update
from webhook_receiver import Receiver

from synthaudit.app.core.db import make_engine
from synthaudit.app.core.tables import Audit

PIXELS = {"method": "pixels", "image_size": 32}
BLOCKER = {"method": "paper", "image_size": 32, "pretrain_images_seen": 5_000_000}  # cancelled early


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.stop()


@pytest.fixture(scope="module")
def plain_api(tmp_path_factory: pytest.TempPathFactory, proc_tools: Any) -> Iterator[tuple[Any, Path]]:
    """An embedded server with no WEBHOOK_ALLOWED_HOSTS (the default)."""
    home = tmp_path_factory.mktemp("ssrf")
    env = proc_tools.clean_env(SYNTHAUDIT_HOME=str(home), PROGRESS_INTERVAL_S="0.2")
    env.pop("WEBHOOK_ALLOWED_HOSTS", None)
    server = proc_tools.start_server(env, home / "api.log", home / "storage")
    yield server, home
    server.proc.stop()


def hostile_urls(receiver_port: int) -> list[str]:
    """Internal destinations in the spellings an attacker would try (none may be accepted)."""
    return [
        f"http://127.0.0.1:{receiver_port}/hook",  # a live internal service
        "http://127.0.0.1/",
        "http://127.0.0.2:80/",
        "http://localhost/",
        "http://LOCALHOST./admin",
        "http://api.localhost/",
        "http://127.1/",  # inet_aton spellings of 127.0.0.1
        "http://2130706433/",
        "http://0x7f.1/",
        "http://0177.0.0.1/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",  # v4-mapped
        "http://[::ffff:7f00:1]/",
        "http://[2002:7f00:1::1]/",  # 6to4 of 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 of 169.254.169.254
        "http://169.254.169.254/latest/meta-data/",  # cloud metadata
        "http://[fe80::1]/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",  # CGNAT
        "http://0.0.0.0/",
        "http://[::]/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://240.0.0.1/",
        "http://[fc00::1]/",
        "http://[fec0::1]/",
        "http://192.0.2.1/",  # documentation
        "http://198.18.0.1/",  # benchmarking
        "https://8.8.8.8:6379/",  # a public address, but a port other than 80/443
        "http://8.8.8.8:22/",
        "http://hooks.example.org:8080/",
        "http://user:pw@hooks.example.org/",
        "http://hooks.example.org/a b",
        "ftp://hooks.example.org/",
    ]


def test_webhook_urls_to_internal_destinations_are_refused_at_creation(
    plain_api, receiver, membership_set, helpers
) -> None:
    import httpx

    server, _ = plain_api
    client = httpx.Client(base_url=server.url, timeout=60.0)
    real, generated = helpers.upload_set(client, membership_set[0])
    base = {"real_dataset_id": real, "generated_dataset_id": generated, "config": PIXELS}
    for url in hostile_urls(receiver.port):
        answer = client.post("/v1/audits", json={**base, "webhook_url": url})
        assert answer.status_code == 422, (url, answer.status_code, answer.text)
        assert answer.headers["content-type"].startswith("application/problem+json")
        assert answer.json()["detail"].startswith("webhook_url: ")
        assert url not in answer.text  # the URL is not echoed
    assert client.get("/readyz").status_code == 200
    time.sleep(1.0)
    assert receiver.calls == []
    client.close()


def test_a_delivery_checks_its_destination_again(plain_api, receiver, membership_set, helpers) -> None:
    """DNS may change between creation and delivery: the sender checks again. Stand-in for a name that
    now resolves to loopback: the stored URL is changed to the live loopback receiver behind the
    service's back. Nothing reaches it; the webhook ends `failed` after 0 attempts."""
    import httpx

    server, home = plain_api
    client = httpx.Client(base_url=server.url, timeout=60.0)
    real, generated = helpers.upload_set(client, membership_set[0])
    base = {"real_dataset_id": real, "generated_dataset_id": generated}
    blocker = client.post("/v1/audits", json={**base, "config": BLOCKER}).json()
    helpers.wait(client, blocker["id"], check=lambda a: a["stage"] == "pretrain")
    created = client.post("/v1/audits", json={**base, "webhook_url": "http://hooks.invalid/notify"})
    assert created.status_code == 202, created.text
    target = created.json()
    assert target["status"] == "queued"

    engine = make_engine(f"sqlite:///{home / 'synthaudit.db'}")
    try:
        with engine.begin() as conn:
            conn.execute(
                update(Audit).where(Audit.id == uuid.UUID(target["id"])).values(webhook_url=receiver.url)
            )
    finally:
        engine.dispose()
    calls_before = len(receiver.calls)
    assert client.post(f"/v1/audits/{target['id']}/cancel").status_code == 200
    deadline = time.monotonic() + 30
    while client.get(f"/v1/audits/{target['id']}").json()["webhook_status"] in (None, "sending"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert client.get(f"/v1/audits/{target['id']}").json()["webhook_status"] == "failed"
    assert len(receiver.calls) == calls_before  # never reached
    assert f"audit {target['id']}: webhook failed after 0 attempt(s) (refused: " in server.proc.output()
    assert client.post(f"/v1/audits/{blocker['id']}/cancel").status_code == 200
    client.close()


def test_names_resolving_to_loopback_are_refused_at_delivery(receiver) -> None:
    """`localhost` (and any name the resolver maps to an internal address) is refused when the sender
    resolves it, even on port 80/443, and a name is not an allowlisted address it resolves to."""
    from synthaudit.app.core.net_guard import parse_allowlist
    from synthaudit.app.core.webhook_signing import new_secret
    from synthaudit.app.core.webhooks import deliver

    before = len(receiver.calls)
    for url, allowlist in (
        ("http://localhost/hook", ""),
        ("https://localhost/hook", ""),
        (f"http://localhost:{receiver.port}/hook", receiver.allowed),  # 127.0.0.1:port is listed
        (receiver.url, ""),
    ):
        result = deliver(
            url, {"delivery_id": str(uuid.uuid4())}, new_secret(), allowlist=parse_allowlist(allowlist)
        )
        assert not result.delivered and result.attempts == 0, (url, result)
        assert result.last_error and result.last_error.startswith("refused: "), (url, result)
    assert len(receiver.calls) == before


def test_a_delivery_connects_to_the_checked_address_and_names_the_host(receiver) -> None:
    """No second resolution between check and connection: the socket goes to the checked address, the
    request carries the URL's name (here one that resolves nowhere) as its Host."""
    from synthaudit.app.core.net_guard import parse_target
    from synthaudit.app.core.webhooks import post_once

    target = parse_target(f"http://hooks.invalid:{receiver.port}/pinned?x=1")
    before = len(receiver.calls)
    assert post_once(target, ["127.0.0.1"], b"{}", {"Content-Type": "application/json"}, 5.0) is None
    call = receiver.calls[before]
    assert call["headers"]["Host"] == f"hooks.invalid:{receiver.port}" and call["path"] == "/pinned?x=1"


def test_redirects_are_not_followed() -> None:
    from synthaudit.app.core.net_guard import parse_allowlist
    from synthaudit.app.core.webhook_signing import new_secret
    from synthaudit.app.core.webhooks import deliver

    inner = Receiver()
    outer = Receiver(status=307, location=inner.url)
    try:
        allowlist = parse_allowlist(f"{inner.allowed},{outer.allowed}")
        result = deliver(
            outer.url, {"delivery_id": "d"}, new_secret(), allowlist=allowlist, max_attempts=2, backoff_s=0
        )
        assert not result.delivered and result.last_error == "HTTP 307" and len(outer.calls) == 2
        assert inner.calls == []
    finally:
        inner.stop()
        outer.stop()


def test_an_attempt_ends_at_its_timeout_however_slowly_the_receiver_answers() -> None:
    """A receiver that drips its answer one header line at a time cannot hold a sender thread."""
    from synthaudit.app.core.net_guard import parse_target
    from synthaudit.app.core.webhooks import post_once

    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def drip() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")
            while not stop.is_set():
                try:
                    conn.sendall(b"X-Slow: 1\r\n")
                except OSError:
                    return
                time.sleep(0.2)

    threading.Thread(target=drip, daemon=True).start()
    target = parse_target(f"http://127.0.0.1:{listener.getsockname()[1]}/")
    started = time.monotonic()
    try:
        assert post_once(target, ["127.0.0.1"], b"{}", {}, 1.0) == "TimeoutError"
        assert time.monotonic() - started < 3.0
    finally:
        stop.set()
        listener.close()


# --- one thread per delivery (#15) -------------------------------------------------------------------


@pytest.fixture(scope="module")
def holding_receiver() -> Iterator[Receiver]:
    r = Receiver(hold_s=1.5)
    yield r
    r.stop()


@pytest.fixture(scope="module")
def pooled_api(
    tmp_path_factory: pytest.TempPathFactory, holding_receiver: Receiver, proc_tools: Any
) -> Iterator[Any]:
    home = tmp_path_factory.mktemp("webhook-pool")
    env = proc_tools.clean_env(
        SYNTHAUDIT_HOME=str(home),
        PROGRESS_INTERVAL_S="0.2",
        WEBHOOK_ALLOWED_HOSTS=holding_receiver.allowed,
        WEBHOOK_MAX_CONCURRENCY="2",
    )
    server = proc_tools.start_server(env, home / "api.log", home / "storage")
    yield server
    server.proc.stop()


def test_many_finishing_audits_share_a_bounded_delivery_pool(
    pooled_api, holding_receiver, membership_set, helpers
) -> None:
    """8 audits end within a second (cancelled while queued); their receiver holds every POST 1.5 s.
    With WEBHOOK_MAX_CONCURRENCY=2 it never holds more than 2 at once, and all 8 arrive."""
    import httpx

    client = httpx.Client(base_url=pooled_api.url, timeout=60.0)
    real, generated = helpers.upload_set(client, membership_set[0])
    base = {"real_dataset_id": real, "generated_dataset_id": generated}
    blocker = client.post("/v1/audits", json={**base, "config": BLOCKER}).json()
    helpers.wait(client, blocker["id"], check=lambda a: a["stage"] == "pretrain")
    audits = [
        client.post("/v1/audits", json={**base, "webhook_url": holding_receiver.url}).json() for _ in range(8)
    ]
    for audit in audits:
        assert client.post(f"/v1/audits/{audit['id']}/cancel").status_code == 200
    deadline = time.monotonic() + 60
    while len(holding_receiver.calls) < 8:
        assert time.monotonic() < deadline, len(holding_receiver.calls)
        time.sleep(0.1)
    assert holding_receiver.max_active == 2
    for audit in audits:
        deadline = time.monotonic() + 10
        while client.get(f"/v1/audits/{audit['id']}").json()["webhook_status"] != "delivered":
            assert time.monotonic() < deadline
            time.sleep(0.1)
    assert client.post(f"/v1/audits/{blocker['id']}/cancel").status_code == 200
    client.close()


@pytest.fixture(params=["sqlite", "postgres"])
def webhook_db(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Sessions on a freshly migrated database of each kind."""
    from synthaudit.app.core.db import make_session_factory
    from synthaudit.app.core.migrations import upgrade_head

    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'pool.db'}"
    else:
        url = request.getfixturevalue("empty_pg_url")
    upgrade_head(url)
    engine = make_engine(url)
    yield make_session_factory(engine)
    engine.dispose()


def finished_audit(sessions: Any, url: str) -> uuid.UUID:
    """A cancelled audit row with a webhook to `url` and its secret."""
    from synthaudit.app.core.tables import utcnow
    from synthaudit.app.core.webhook_signing import new_secret

    audit_id = uuid.uuid4()
    with sessions.begin() as session:
        session.add(
            Audit(
                id=audit_id,
                config={},
                status="cancelled",
                progress=0.0,
                stage_timings={},
                finished_at=utcnow(),
                webhook_url=url,
                webhook_secret=new_secret(),
            )
        )
    return audit_id


def webhook_row(sessions: Any, audit_id: uuid.UUID) -> Audit:
    with sessions() as session:
        row = session.get(Audit, audit_id)
        assert row is not None
        return row


def test_the_pool_renews_the_claim_and_a_full_pool_leaves_the_delivery_to_the_sweep(
    webhook_db, receiver
) -> None:
    """A pool thread that takes a delivery renews its claim (compare-and-set on the claim time, in SQLite
    and Postgres alike) and delivers it. When every thread is busy and the queue is full, the webhook is
    not lost: it stays `sending` without a claim time, and the next stalled-webhook sweep sends it."""
    from types import SimpleNamespace

    from synthaudit.app.core.webhook_pool import DeliveryPool
    from synthaudit.app.core.webhooks import notify_finished, resend_stalled

    settings = SimpleNamespace(
        webhook_max_attempts=1,
        webhook_backoff_s=0.0,
        webhook_timeout_s=5.0,
        webhook_allowed_hosts=receiver.allowed,
        webhook_max_concurrency=1,
        webhook_max_queued=0,
    )
    before = len(receiver.calls)
    queued = finished_audit(webhook_db, receiver.url)
    assert notify_finished(webhook_db, queued, settings, pool=DeliveryPool(2, 0))
    deadline = time.monotonic() + 15
    while webhook_row(webhook_db, queued).webhook_status != "delivered":
        assert time.monotonic() < deadline, webhook_row(webhook_db, queued).webhook_status
        time.sleep(0.05)
    assert len(receiver.calls) == before + 1

    full, release = DeliveryPool(1, 0), threading.Event()
    assert full.submit(lambda: release.wait(30)) and not full.submit(lambda: None)
    left = finished_audit(webhook_db, receiver.url)
    try:
        assert notify_finished(webhook_db, left, settings, pool=full)
        row = webhook_row(webhook_db, left)
        assert row.webhook_status == "sending" and row.webhook_claimed_at is None
        assert len(receiver.calls) == before + 1
        assert resend_stalled(webhook_db, settings, background=False) == [left]
        assert webhook_row(webhook_db, left).webhook_status == "delivered"
        assert len(receiver.calls) == before + 2
    finally:
        release.set()
