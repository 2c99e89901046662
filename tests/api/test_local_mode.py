"""The key-less local mode against a web page in the operator's browser (issue 14 #1): over real HTTP to
the embedded server, a request naming another host (DNS rebinding), a cross-site request (a form of
another site, `Origin: null`, `Sec-Fetch-Site: cross-site`) and a request relayed by a proxy are refused
with problem+json, and nothing is stored; whether keys may be skipped follows the socket the server is
really bound to, never a setting."""

from __future__ import annotations

import sqlite3
import sys
import uuid
from pathlib import Path

import pytest

PROBLEM = "application/problem+json"
REBIND = "rebind.attacker.example"


def datasets_stored(home: Path) -> int:
    with sqlite3.connect(home / "synthaudit.db") as db:
        return int(db.execute("SELECT count(*) FROM datasets").fetchone()[0])


def refused(response, status: int, needle: str) -> None:  # type: ignore[no-untyped-def]
    assert response.status_code == status, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and needle in body["detail"]


@pytest.fixture(scope="module")
def stored(embedded_api, membership_set, helpers) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """A dataset of the embedded server, uploaded the legitimate way."""
    import httpx

    with httpx.Client(base_url=embedded_api.url, timeout=60.0) as client:
        real, generated = helpers.upload_set(client, membership_set[0])
    return {"real": real, "generated": generated}


def test_a_rebound_host_name_is_misdirected(embedded_client, embedded_api, stored) -> None:  # type: ignore[no-untyped-def]
    port = embedded_api.url.rsplit(":", 1)[1]
    path = f"/v1/datasets/{stored['real']}"
    assert embedded_client.get(path).status_code == 200  # Host: 127.0.0.1:<port>
    for host in (
        f"{REBIND}:{port}",
        REBIND,
        f"127.0.0.1.{REBIND}:{port}",
        f"localhost.{REBIND}:{port}",
        f"127.0.0.1:{int(port) + 1}",  # another port: another service's origin
        f"user@127.0.0.1:{port}",
        f"127.1:{port}",
        "",
    ):
        for target in (path, f"{path}/images", "/readyz", "/docs"):
            refused(embedded_client.get(target, headers={"Host": host}), 421, "localhost, 127.0.0.1 or [::1]")
    for host in (f"localhost:{port}", f"LOCALHOST:{port}", f"127.0.0.1:{port}"):
        assert embedded_client.get(path, headers={"Host": host}).status_code == 200


def test_cross_site_requests_are_refused_and_store_nothing(
    embedded_client, embedded_api, membership_set, stored
) -> None:  # type: ignore[no-untyped-def]
    port = embedded_api.url.rsplit(":", 1)[1]
    home = embedded_api.storage.parent
    png = sorted((membership_set[0] / "real").glob("*.png"))[0].read_bytes()
    before = datasets_stored(home)
    for headers in (
        {"Origin": "http://evil.example"},  # a form on another site posting multipart
        {"Origin": "null"},  # a sandboxed frame, a file:// page
        {"Origin": f"http://localhost:{int(port) + 1}"},  # another local web app
        {"Origin": f"https://127.0.0.1:{port}"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "cross-site"},
    ):
        post = embedded_client.post(
            "/v1/datasets",
            data={"role": "real"},
            files=[("files", ("a.png", png, "image/png"))],
            headers=headers,
        )
        refused(post, 403, "cross-site request is refused")
        refused(embedded_client.get(f"/v1/datasets/{stored['real']}", headers=headers), 403, "cross-site")
        audit = {"real_dataset_id": stored["real"], "generated_dataset_id": stored["generated"]}
        refused(embedded_client.post("/v1/audits", json=audit, headers=headers), 403, "cross-site")
    assert datasets_stored(home) == before
    # The service's own pages (Swagger UI's "Try it out") send their own origin: served.
    own = {"Origin": f"http://127.0.0.1:{port}", "Sec-Fetch-Site": "same-origin"}
    post = embedded_client.post(
        "/v1/datasets", data={"role": "real"}, files=[("files", ("a.png", png, "image/png"))], headers=own
    )
    assert post.status_code == 201, post.text
    assert datasets_stored(home) == before + 1


def test_requests_relayed_by_a_proxy_are_refused(embedded_client, stored) -> None:  # type: ignore[no-untyped-def]
    path = f"/v1/datasets/{stored['real']}"
    for headers in (
        {"X-Forwarded-For": "203.0.113.7"},
        {"X-Forwarded-Host": "synthaudit.example"},
        {"X-Forwarded-Proto": "https"},
        {"Forwarded": "for=203.0.113.7;proto=https"},
        {"X-Real-IP": "203.0.113.7"},
    ):
        refused(embedded_client.get(path, headers=headers), 403, "relayed by a proxy")


def test_keys_are_skipped_only_on_a_socket_bound_to_loopback(proc_tools, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A setting saying "bound to localhost" (BIND_HOST, as the old code trusted) changes nothing: a server
    listening on all interfaces requires keys, even for a request that comes in over 127.0.0.1."""
    import httpx

    missing = f"/v1/datasets/{uuid.uuid4()}"
    for host_args, name in ((["--host", "0.0.0.0"], "wildcard"),):
        port = proc_tools.free_port()
        argv = [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "synthaudit.app.main:app_factory",
            *host_args,
            "--port",
            str(port),
        ]
        env = proc_tools.clean_env(SYNTHAUDIT_HOME=str(tmp_path / name), BIND_HOST="127.0.0.1")
        proc = proc_tools.Proc("uvicorn", argv, env, tmp_path / f"{name}.log")
        try:
            proc.wait_for(lambda p=port: _status(f"http://127.0.0.1:{p}/healthz") == 200, 60, "an answer")
            response = httpx.get(f"http://127.0.0.1:{port}{missing}")
            assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
        finally:
            proc.stop()
    # `synthaudit serve --host 0.0.0.0` says so at start and requires keys too.
    port = proc_tools.free_port()
    argv = [sys.executable, "-c", "from synthaudit.app.cli import main; raise SystemExit(main())", "serve"]
    env = proc_tools.clean_env(SYNTHAUDIT_HOME=str(tmp_path / "serve"), BIND_HOST="127.0.0.1")
    proc = proc_tools.Proc(
        "serve", [*argv, "--host", "0.0.0.0", "--port", str(port)], env, tmp_path / "serve.log"
    )
    try:
        proc.wait_for(lambda: _status(f"http://127.0.0.1:{port}/healthz") == 200, 60, "an answer")
        assert _status(f"http://127.0.0.1:{port}{missing}") == 401
        assert "API keys required: bound to 0.0.0.0, not a loopback address" in proc.output()
    finally:
        proc.stop()


def test_with_a_key_the_guards_do_not_apply(proc_tools, tmp_path) -> None:  # type: ignore[no-untyped-def]
    """AUTH_REQUIRED=true on loopback: a key is the proof, whatever Host or Origin say (behind a proxy)."""
    import httpx

    home = tmp_path / "keyed"
    env = proc_tools.clean_env(SYNTHAUDIT_HOME=str(home), AUTH_REQUIRED="true")
    server = proc_tools.start_server(env, tmp_path / "keyed.log", home / "storage")
    try:
        from synthaudit.app.core.config import Settings

        key = proc_tools.create_api_key(Settings(synthaudit_home=home).database_url, "site-a")
        missing = f"/v1/datasets/{uuid.uuid4()}"
        proxied = {
            "Host": "synthaudit.example",
            "X-Forwarded-For": "203.0.113.7",
            "Origin": "https://pacs.example",
        }
        assert httpx.get(server.url + missing, headers=proxied).status_code == 401
        assert (
            httpx.get(server.url + missing, headers={**proxied, **proc_tools.bearer(key)}).status_code == 404
        )
    finally:
        server.proc.stop()


def _status(url: str) -> int:
    import httpx

    try:
        return httpx.get(url, timeout=2).status_code
    except httpx.HTTPError:
        return 0
