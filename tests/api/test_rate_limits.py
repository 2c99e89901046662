"""Per-tenant limits (issue 14 #15), over HTTP on real servers with API keys:

- RATE_LIMIT: the N+1th request of a tenant within the window is a 429 problem+json with Retry-After,
  while another tenant and the probes are not affected; in the distributed mode the count lives in
  Redis, so two API processes share one count per tenant;
- MAX_ACTIVE_AUDITS_PER_TENANT: a tenant with that many queued or running audits gets a 429 at
  POST /v1/audits while another tenant is fine; a finished (cancelled) audit frees its slot; on Postgres
  two API processes receiving simultaneous requests never let a tenant past its limit.
"""

from __future__ import annotations

import concurrent.futures
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

RATE = 30


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _assert_429(response: httpx.Response, slug: str) -> int:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["type"] == f"urn:synthaudit:problem:{slug}"
    retry_after = int(response.headers["Retry-After"])
    assert 1 <= retry_after <= 60
    return retry_after


@pytest.fixture(scope="module")
def limited_embedded(
    tmp_path_factory: pytest.TempPathFactory, proc_tools: Any
) -> Iterator[tuple[Any, dict[str, str]]]:
    """An embedded server with keys required, RATE_LIMIT=30/minute and at most 2 active audits per tenant,
    and keys of three tenants."""
    clean_env, start_server = proc_tools.clean_env, proc_tools.start_server
    home = tmp_path_factory.mktemp("limited")
    env = clean_env(
        SYNTHAUDIT_HOME=str(home),
        AUTH_REQUIRED="true",
        RATE_LIMIT=f"{RATE}/minute",
        MAX_ACTIVE_AUDITS_PER_TENANT="2",
        PROGRESS_INTERVAL_S="0.2",
    )
    server = start_server(env, home / "api.log", home / "storage")
    database = f"sqlite:///{(home / 'synthaudit.db').resolve()}"
    keys = {n: proc_tools.create_api_key(database, f"{n}-{uuid.uuid4().hex[:6]}") for n in ("r", "a", "b")}
    yield server, keys
    server.proc.stop()


def test_the_request_past_the_rate_limit_gets_a_429(limited_embedded) -> None:  # type: ignore[no-untyped-def]
    server, keys = limited_embedded
    with httpx.Client(base_url=server.url, headers=bearer(keys["r"]), timeout=30) as client:
        for i in range(RATE):
            response = client.get("/v1/audits")
            assert response.status_code == 200, (i, response.text)
        _assert_429(client.get("/v1/audits"), "rate-limited")
        _assert_429(client.get(f"/v1/audits/{uuid.uuid4()}"), "rate-limited")  # every route counts
        assert client.get("/healthz").status_code == 200  # the probes do not
        assert client.get("/readyz").status_code == 200
    with httpx.Client(base_url=server.url, headers=bearer(keys["b"]), timeout=30) as other:
        assert other.get("/v1/audits").status_code == 200  # another tenant has its own count
    assert httpx.get(f"{server.url}/v1/audits", timeout=30).status_code == 401  # no key: no count, 401


def _upload_pair(client: httpx.Client, helpers: Any, root: Path) -> dict[str, str]:
    real = helpers.upload(client, "real", sorted((root / "real").glob("*.png")))
    generated = helpers.upload(client, "generated", sorted((root / "generated").glob("*.png")))
    assert real.status_code == generated.status_code == 201, (real.text, generated.text)
    # A long pretraining keeps the audit running (the embedded runner takes one at a time).
    return {
        "real_dataset_id": real.json()["id"],
        "generated_dataset_id": generated.json()["id"],
        "config": {"pretrain_images_seen": 5_000_000},
    }


def test_a_tenant_over_its_active_audits_gets_a_429_while_another_is_fine(
    limited_embedded,
    membership_set,
    helpers,  # type: ignore[no-untyped-def]
) -> None:
    server, keys = limited_embedded
    root, _ = membership_set
    a = httpx.Client(base_url=server.url, headers=bearer(keys["a"]), timeout=60)
    b = httpx.Client(base_url=server.url, headers=bearer(keys["b"]), timeout=60)
    created: list[tuple[httpx.Client, str]] = []
    try:
        body_a, body_b = _upload_pair(a, helpers, root), _upload_pair(b, helpers, root)
        for _ in range(2):
            response = a.post("/v1/audits", json=body_a)
            assert response.status_code == 202, response.text
            created.append((a, response.json()["id"]))
        refused = a.post("/v1/audits", json=body_a)
        _assert_429(refused, "too-many-active-audits")
        assert refused.json()["limit"] == 2 and refused.json()["active"] == 2
        replay = a.post("/v1/audits", json=body_a, headers={"Idempotency-Key": "k1"})
        assert replay.status_code == 429  # a new request; a replay of an accepted one would answer 202
        other = b.post("/v1/audits", json=body_b)
        assert other.status_code == 202, other.text  # tenant b is not limited by a's audits
        created.append((b, other.json()["id"]))
        first = created[0][1]
        assert a.post(f"/v1/audits/{first}/cancel").status_code == 200  # a finished audit frees a slot
        again = a.post("/v1/audits", json=body_a)
        assert again.status_code == 202, again.text
        created.append((a, again.json()["id"]))
    finally:
        for client, audit_id in created:
            client.delete(f"/v1/audits/{audit_id}")
        a.close()
        b.close()


@pytest.fixture(scope="module")
def two_distributed(
    pg_url: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory, proc_tools: Any
) -> Iterator[tuple[list[Any], Any]]:
    """Two API processes of one distributed deployment (Postgres, Redis; no worker: audits stay queued),
    RATE_LIMIT=30/minute counted in Redis, at most one active audit per tenant; and a key maker for it."""
    clean_env, start_server = proc_tools.clean_env, proc_tools.start_server
    home = tmp_path_factory.mktemp("limited-distributed")
    env = clean_env(
        DATABASE_URL=pg_url,
        CELERY_BROKER_URL=redis_url,
        CELERY_QUEUE=f"synthaudit-limits-{uuid.uuid4().hex[:8]}",
        SYNTHAUDIT_HOME=str(home),
        STORAGE_DIR=str(home / "storage"),
        GROUP_KEY_SECRET="limits-test-" + uuid.uuid4().hex,
        RATE_LIMIT=f"{RATE}/minute",
        MAX_ACTIVE_AUDITS_PER_TENANT="1",
    )
    servers = [start_server(env, home / f"api-{i}.log", home / "storage") for i in range(2)]
    yield servers, lambda tenant: proc_tools.create_api_key(pg_url, tenant)
    for server in servers:
        server.proc.stop()


def test_two_api_processes_share_one_count_per_tenant_in_redis(
    two_distributed,  # type: ignore[no-untyped-def]
) -> None:
    servers, new_key = two_distributed
    key = new_key(f"rate-{uuid.uuid4().hex[:6]}")
    clients = [httpx.Client(base_url=s.url, headers=bearer(key), timeout=30) for s in servers]
    try:
        for i in range(RATE):
            response = clients[i % 2].get("/v1/audits")
            assert response.status_code == 200, (i, response.text)
        for client in clients:  # each process saw only half, but the count is the tenant's
            _assert_429(client.get("/v1/audits"), "rate-limited")
        other = new_key(f"rate-{uuid.uuid4().hex[:6]}")
        assert httpx.get(f"{servers[1].url}/v1/audits", headers=bearer(other), timeout=30).status_code == 200
    finally:
        for client in clients:
            client.close()


def test_simultaneous_audits_on_two_processes_never_pass_the_limit(
    two_distributed,
    membership_set,
    helpers,  # type: ignore[no-untyped-def]
) -> None:
    servers, new_key = two_distributed
    root, _ = membership_set
    key, other = (new_key(f"conc-{uuid.uuid4().hex[:6]}") for _ in range(2))
    clients = [httpx.Client(base_url=s.url, headers=bearer(key), timeout=60) for s in servers]
    try:
        body = _upload_pair(clients[0], helpers, root)
        for _ in range(3):
            with concurrent.futures.ThreadPoolExecutor(4) as pool:
                answers = list(pool.map(lambda c: c.post("/v1/audits", json=body), clients + clients))
            accepted = [r for r in answers if r.status_code == 202]
            assert len(accepted) == 1, [(r.status_code, r.text[:200]) for r in answers]
            for response in answers:
                if response.status_code != 202:
                    _assert_429(response, "too-many-active-audits")
            with httpx.Client(base_url=servers[1].url, headers=bearer(other), timeout=60) as b:
                body_b = _upload_pair(b, helpers, root)
                response = b.post("/v1/audits", json=body_b)
                assert response.status_code == 202, response.text  # another tenant is fine
                assert b.delete(f"/v1/audits/{response.json()['id']}").status_code == 204
            assert clients[0].delete(f"/v1/audits/{accepted[0].json()['id']}").status_code == 204
    finally:
        for client in clients:
            client.close()
