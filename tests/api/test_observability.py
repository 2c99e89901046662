"""Prometheus /metrics, X-Request-ID on every answer, and JSON log lines with request and audit ids."""

from __future__ import annotations

import json
import logging
import re
import uuid


def operator_key(database_url: str) -> str:
    """A new operator key, written into the database as `synthaudit keys create --operator` does."""
    from synthaudit.app.core.db import make_engine, make_session_factory, session_scope
    from synthaudit.app.services.keys import create_key

    engine = make_engine(database_url)
    try:
        with session_scope(make_session_factory(engine)) as session:
            return create_key(session, None, "prometheus", operator=True).token
    finally:
        engine.dispose()


def test_metrics_and_request_ids(embedded_client, embedded_api) -> None:
    from synthaudit.app.core.config import Settings

    client = embedded_client
    operator = operator_key(Settings(synthaudit_home=embedded_api.storage.parent).database_url)
    tagged = client.get("/healthz", headers={"X-Request-ID": "trace-42"})
    assert tagged.headers["x-request-id"] == "trace-42"
    fresh = client.get(f"/v1/audits/{uuid.uuid4()}")
    assert fresh.status_code == 404 and re.fullmatch(r"[0-9a-f]{32}", fresh.headers["x-request-id"])
    hostile = client.get("/healthz", headers={"X-Request-ID": "x" * 500})
    assert hostile.headers["x-request-id"] != "x" * 500  # not a valid id: replaced

    response = client.get("/metrics", headers={"Authorization": f"Bearer {operator}"})
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'synthaudit_http_requests_total{method="GET",route="/v1/audits/{audit_id}",status="404"}' in text
    assert "synthaudit_http_request_duration_seconds_bucket" in text
    assert "synthaudit_database_up 1.0" in text
    assert (
        "# TYPE synthaudit_audits gauge" in text
        and "# TYPE synthaudit_comparisons gauge" in text
        and "# TYPE synthaudit_stage_duration_seconds histogram" in text
    )


def test_json_log_lines_carry_request_and_audit_ids() -> None:
    from synthaudit.app.core.logs import JsonFormatter, RequestIdFilter, _request_id

    audit_id = uuid.uuid4()
    record = logging.LogRecord(
        "synthaudit.worker.pipeline",
        logging.INFO,
        __file__,
        1,
        "audit %s: queued (%s)",
        (audit_id, "embedded"),
        None,
    )
    token = _request_id.set("req-1")
    try:
        assert RequestIdFilter().filter(record)
    finally:
        _request_id.reset(token)
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == f"audit {audit_id}: queued (embedded)"
    assert line["request_id"] == "req-1" and line["audit_id"] == str(audit_id)
    assert (
        line["level"] == "INFO"
        and line["logger"] == "synthaudit.worker.pipeline"
        and line["ts"].endswith("+00:00")
    )


def test_metrics_are_for_operator_keys_only(api, client, pg_url, proc_tools) -> None:  # type: ignore[no-untyped-def]
    """issue 14 #11: /metrics counts every tenant's jobs, so a tenant's key gets a 403 there, and an
    operator key (made with the real `synthaudit keys create --operator`) reads /metrics and nothing else."""
    import subprocess
    import sys

    import httpx

    def keys(*args: str) -> subprocess.CompletedProcess[str]:
        argv = [
            sys.executable,
            "-c",
            "from synthaudit.app.cli import main; raise SystemExit(main())",
            "keys",
            *args,
        ]
        env = proc_tools.clean_env(DATABASE_URL=pg_url)
        return subprocess.run(argv, env=env, cwd=proc_tools.repo, capture_output=True, text=True, timeout=120)

    tenant = client.get("/metrics")
    assert tenant.status_code == 403 and "operator key" in tenant.json()["detail"]
    assert tenant.headers["content-type"].startswith("application/problem+json")
    anonymous = httpx.get(f"{api.url}/metrics")
    assert anonymous.status_code == 401 and "operator key" in anonymous.json()["detail"]

    created = keys("create", "--operator", "--name", "prometheus")
    assert created.returncode == 0, created.stderr
    operator = {"Authorization": f"Bearer {created.stdout.strip()}"}
    scrape = httpx.get(f"{api.url}/metrics", headers=operator)
    assert scrape.status_code == 200 and "synthaudit_database_up 1.0" in scrape.text
    for path in (f"/v1/datasets/{uuid.uuid4()}", "/v1/audits"):
        response = httpx.get(f"{api.url}{path}", headers=operator)
        assert response.status_code == 403 and "operator key reads /metrics only" in response.json()["detail"]
    assert "(operator)" in keys("list").stdout
    both = keys("create", "--operator", "--tenant", "site-a")
    assert both.returncode == 2 and "not allowed with" in both.stderr


def test_key_less_local_mode_has_no_metrics_without_an_operator_key(embedded_client) -> None:  # type: ignore[no-untyped-def]
    response = embedded_client.get("/metrics")
    assert response.status_code == 401 and "operator key" in response.json()["detail"]
