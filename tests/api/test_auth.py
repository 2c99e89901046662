"""API keys and tenant isolation over HTTP, for every route the app has (enumerated from app.routes, so a
route added later is covered too): no key or a bad key is a 401, another tenant's ids are a 404, and
the owner still sees its data afterwards. Keys are made and revoked with the real `synthaudit keys`."""

from __future__ import annotations

import re
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest
from route_matrix import fill, route_list

from synthaudit.app.auth import PUBLIC_PATHS

PROBLEM = "application/problem+json"


def cli(proc_tools, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:  # type: ignore[no-untyped-def]
    argv = [sys.executable, "-c", "from synthaudit.app.cli import main; raise SystemExit(main())", *args]
    return subprocess.run(
        argv, env=env, cwd=proc_tools.repo, capture_output=True, text=True, timeout=120, check=False
    )


def app_routes(pg_url: str, redis_url: str) -> list[tuple[str, str]]:
    """(method, path) of every route of the app, as the server builds it."""
    from synthaudit.app.core.config import Settings
    from synthaudit.app.main import create_app

    routes = route_list(create_app(Settings(database_url=pg_url, celery_broker_url=redis_url)))
    assert ("GET", "/v1/audits/{audit_id}") in routes and ("POST", "/v1/datasets") in routes
    return routes


@pytest.fixture(scope="module")
def owned(api, membership_set, helpers) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Tenant a's datasets, a (queued or finished) audit and comparison."""
    import httpx

    with httpx.Client(base_url=api.url, timeout=60.0, headers=api.headers) as client:
        real, generated = helpers.upload_set(client, membership_set[0])
        body = {"real_dataset_id": real, "generated_dataset_id": generated, "config": {"method": "pixels"}}
        audit = client.post("/v1/audits", json=body, headers={"Idempotency-Key": "shared-key"})
        assert audit.status_code == 202, audit.text
        comparison = client.post("/v1/comparisons", json=comparison_body(real, generated))
        assert comparison.status_code == 202, comparison.text
        return {
            "dataset_id": real,
            "generated": generated,
            "audit_id": audit.json()["id"],
            "comparison_id": comparison.json()["id"],
        }


def comparison_body(real: str, generated: str) -> dict[str, object]:
    """A comparison of one generated set with itself under two names (the cheapest there is)."""
    checkpoints = [{"dataset_id": generated, "name": name} for name in ("ckpt-1", "ckpt-2")]
    return {"real_dataset_id": real, "generated": checkpoints, "config": {"method": "pixels"}}


def request(client, method: str, path: str, ids: dict[str, str]):  # type: ignore[no-untyped-def]
    body = None
    if method == "POST" and path == "/v1/audits":
        body = {"real_dataset_id": ids["dataset_id"], "generated_dataset_id": ids["generated"]}
    if method == "POST" and path == "/v1/comparisons":
        body = comparison_body(ids["dataset_id"], ids["generated"])
    return client.request(method, fill(path, ids), json=body)


@pytest.fixture()
def anonymous(api) -> Iterator[object]:  # type: ignore[no-untyped-def]
    import httpx

    with httpx.Client(base_url=api.url, timeout=60.0) as client:
        yield client


def test_every_route_needs_a_valid_key(api, anonymous, owned, pg_url, redis_url) -> None:  # type: ignore[no-untyped-def]
    routes = app_routes(pg_url, redis_url)
    protected = [(m, p) for m, p in routes if p not in PUBLIC_PATHS]
    assert len(protected) >= 9  # datasets x4, audits x6 at least
    for header in (
        {},
        {"Authorization": "Bearer sa_not-a-real-key"},
        {"X-API-Key": "nope"},
        {"Authorization": "Basic eDp5"},
    ):
        for method, path in protected:
            response = anonymous.request(method, fill(path, owned), headers=header)
            assert response.status_code == 401, (method, path, header, response.status_code)
            assert response.headers["content-type"].startswith(PROBLEM)
            assert response.headers["www-authenticate"].startswith("Bearer")
    for path in ("/healthz", "/readyz", "/openapi.json", "/docs"):
        assert anonymous.get(path).status_code == 200


def test_another_tenants_ids_are_404_on_every_route(
    api, client, other_client, owned, pg_url, redis_url
) -> None:  # type: ignore[no-untyped-def]
    routes = [(m, p) for m, p in app_routes(pg_url, redis_url) if p not in PUBLIC_PATHS]
    checked = 0
    for method, path in routes:
        if "{" in path:
            response = request(other_client, method, path, owned)
            assert response.status_code == 404, (method, path, response.status_code, response.text[:200])
            # Indistinguishable from an id that does not exist at all.
            unknown = {k: str(uuid.uuid4()) for k in owned}
            baseline = request(other_client, method, path, unknown)
            assert baseline.status_code == 404
            details = [_mask(_mask(r.json()["detail"], owned), unknown) for r in (response, baseline)]
            assert details[0] == details[1], details
            checked += 1
        elif (method, path) in (("POST", "/v1/audits"), ("POST", "/v1/comparisons")):  # another's datasets
            response = request(other_client, method, path, owned)
            assert response.status_code == 422 and "no dataset" in response.json()["detail"]
            checked += 1
    assert checked >= 9
    # Nothing was deleted or cancelled by the other tenant's requests.
    assert client.get(f"/v1/datasets/{owned['dataset_id']}").status_code == 200
    audit = client.get(f"/v1/audits/{owned['audit_id']}")
    assert audit.status_code == 200 and audit.json()["status"] != "cancelled"
    comparison = client.get(f"/v1/comparisons/{owned['comparison_id']}")
    assert comparison.status_code == 200 and comparison.json()["status"] != "cancelled"


LISTINGS = ("/v1/datasets", "/v1/audits", "/v1/encoders", "/v1/comparisons")


def test_listings_show_only_the_callers_items(
    api, anonymous, client, other_client, owned, pg_url, redis_url
) -> None:  # type: ignore[no-untyped-def]
    """The listings are routes like the others (401 without a valid key, with or without a query), and
    tenant b's pages, walked to the end, never hold one of tenant a's datasets or audits."""
    routes = app_routes(pg_url, redis_url)
    assert {("GET", path) for path in LISTINGS} <= set(routes)
    for path in LISTINGS:
        for query in ({}, {"limit": "1"}, {"cursor": "not-a-cursor"}):
            refused = anonymous.get(path, params=query, headers={"X-API-Key": "nope"})
            assert refused.status_code == 401 and refused.headers["content-type"].startswith(PROBLEM)
    theirs = {owned["dataset_id"], owned["generated"], owned["audit_id"], owned["comparison_id"]}
    for tenant, who in (("a", client), ("b", other_client)):
        seen: set[str] = set()
        for path in LISTINGS:
            cursor = None
            while True:
                page = who.get(path, params={"limit": 200, **({"cursor": cursor} if cursor else {})})
                assert page.status_code == 200, page.text
                seen |= {item["id"] for item in page.json()["items"]}
                if not (cursor := page.json()["next_cursor"]):
                    break
        assert (seen & theirs) == (theirs if tenant == "a" else set()), tenant


def test_idempotency_keys_are_per_tenant(client, other_client, owned, membership_set, helpers) -> None:  # type: ignore[no-untyped-def]
    real, generated = helpers.upload_set(other_client, membership_set[0])
    body = {"real_dataset_id": real, "generated_dataset_id": generated, "config": {"method": "pixels"}}
    mine = other_client.post("/v1/audits", json=body, headers={"Idempotency-Key": "shared-key"})
    assert mine.status_code == 202 and mine.json()["id"] != owned["audit_id"]
    assert "idempotent-replayed" not in mine.headers
    assert client.get(f"/v1/audits/{mine.json()['id']}").status_code == 404


def test_keys_cli_create_list_revoke(api, pg_url, proc_tools) -> None:  # type: ignore[no-untyped-def]
    import httpx

    env = proc_tools.clean_env(DATABASE_URL=pg_url)
    created = cli(proc_tools, env, "keys", "create", "--tenant", "clinic-7", "--name", "ci")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    key_id = re.search(r"id:\s+(\S+)", created.stderr).group(1)  # type: ignore[union-attr]
    assert token.startswith("sa_") and len(token) > 40
    headers = {"X-API-Key": token}
    assert httpx.get(f"{api.url}/v1/datasets/{uuid.uuid4()}", headers=headers).status_code == 404
    listing = cli(proc_tools, env, "keys", "list", "--tenant", "clinic-7")
    assert key_id in listing.stdout and token not in listing.stdout and token[:12] in listing.stdout
    assert "active" in listing.stdout
    revoked = cli(proc_tools, env, "keys", "revoke", key_id[:8])
    assert revoked.returncode == 0 and "revoked" in revoked.stdout
    assert httpx.get(f"{api.url}/v1/datasets/{uuid.uuid4()}", headers=headers).status_code == 401
    # The same service functions refuse bad input; only the hash is stored.
    from sqlalchemy import text

    from synthaudit.app.core.db import make_engine, make_session_factory, session_scope
    from synthaudit.app.services.keys import KeyCommandError, create_key, list_keys, revoke_key

    engine = make_engine(pg_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            with pytest.raises(KeyCommandError):
                create_key(session, "bad tenant!")
            with pytest.raises(KeyCommandError):
                revoke_key(session, "00000000")
            assert revoke_key(session, key_id) is False  # already revoked
            assert [k.revoked_at is not None for k in list_keys(session, "clinic-7")] == [True]
        with engine.connect() as conn:
            stored = conn.execute(text("SELECT key_hash, prefix FROM api_keys")).all()
    finally:
        engine.dispose()
    assert all(token not in (h + p) for h, p in stored) and any(len(h) == 64 for h, _ in stored)


def test_embedded_mode_skips_keys_only_on_localhost(proc_tools, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import httpx

    missing = f"/v1/datasets/{uuid.uuid4()}"
    # A bare uvicorn on 127.0.0.1: the socket it listens on is loopback, so no keys (no setting needed).
    env = proc_tools.clean_env(SYNTHAUDIT_HOME=str(tmp_path / "bare"))
    server = proc_tools.start_server(env, tmp_path / "bare.log", tmp_path / "bare" / "storage")
    try:
        assert httpx.get(server.url + missing).status_code == 404
        assert "API keys are not required: embedded mode over a loopback socket" in server.proc.output()
    finally:
        server.proc.stop()
    # `synthaudit serve` on localhost: no keys, and it says so at start.
    port = proc_tools.free_port()
    argv = [
        sys.executable,
        "-c",
        "from synthaudit.app.cli import main; raise SystemExit(main())",
        "serve",
        "--port",
        str(port),
    ]
    proc = proc_tools.Proc(
        "serve", argv, proc_tools.clean_env(SYNTHAUDIT_HOME=str(tmp_path / "local")), tmp_path / "serve.log"
    )
    try:
        proc.wait_for(lambda: _status(f"http://127.0.0.1:{port}/readyz") == 200, 60, "readiness")
        assert _status(f"http://127.0.0.1:{port}{missing}") == 404
        assert f"API keys are not required: embedded mode bound to 127.0.0.1:{port}" in proc.output()
    finally:
        proc.stop()


@pytest.mark.parametrize(
    ("settings", "keyless"),
    [
        ({}, True),  # embedded: key-less over a loopback socket (app/local_mode.py decides which)
        ({"auth_required": True}, False),
        ({"celery_broker_url": "redis://x:6379/0"}, False),  # distributed
        ({"celery_broker_url": "redis://x:6379/0", "auth_required": False}, True),  # still loopback only
        ({"bind_host": "0.0.0.0"}, True),  # no such setting any more: the socket decides
    ],
)
def test_when_keys_may_be_skipped(settings: dict, keyless: bool, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from synthaudit.app.core.config import Settings

    assert Settings(synthaudit_home=tmp_path, **settings).keyless_local is keyless


def _mask(text: str, ids: dict[str, str]) -> str:
    for value in ids.values():
        text = text.replace(value, "<id>")
    return text


def _status(url: str) -> int:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0
