"""The validation, 404 and isolation matrices over every route the app has, in-process (fast tier).

The routes are enumerated from the app, so a route added later is covered too. The same properties are
checked against real server processes on Postgres + Redis in tests/api/test_auth.py (slow tier).
"""

from __future__ import annotations

import uuid

import pytest
from inprocess_app import upload_pngs
from route_matrix import fill, route_list

from synthaudit.app.auth import PUBLIC_PATHS

PROBLEM = "application/problem+json"


def routes(app) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    """(method, path) of every route of the app that is not public."""
    return [(m, p) for m, p in route_list(app) if p not in PUBLIC_PATHS and p.startswith("/v1/")]


@pytest.fixture(scope="module")
def owned(inproc) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Tenant a's real and generated datasets, an audit and a comparison of them."""
    headers = inproc.as_tenant("a")
    real = upload_pngs(inproc.client, headers, "real", range(6))
    generated = upload_pngs(inproc.client, headers, "generated", range(100, 106))
    audit = inproc.client.post(
        "/v1/audits", headers=headers, json={"real_dataset_id": real, "generated_dataset_id": generated}
    )
    assert audit.status_code in (201, 202), audit.text
    checkpoints = [{"dataset_id": generated, "name": name} for name in ("ckpt-1", "ckpt-2")]
    comparison = inproc.client.post(
        "/v1/comparisons",
        headers=headers,
        json={"real_dataset_id": real, "generated": checkpoints, "config": {"method": "pixels"}},
    )
    assert comparison.status_code == 202, comparison.text
    return {
        "dataset_id": real,
        "generated": generated,
        "audit_id": audit.json()["id"],
        "comparison_id": comparison.json()["id"],
    }


def test_every_route_needs_a_valid_key(inproc, owned) -> None:  # type: ignore[no-untyped-def]
    protected = routes(inproc.client.app)
    assert len(protected) >= 15
    for header in ({}, {"Authorization": "Bearer sa_not-a-real-key"}, {"X-API-Key": "nope"}):
        for method, path in protected:
            response = inproc.client.request(method, fill(path, dict(owned)), headers=header)
            assert response.status_code == 401, (method, path, header, response.status_code)
            assert response.headers["content-type"].startswith(PROBLEM)


def test_unknown_ids_are_404_problems_on_every_route(inproc, owned) -> None:  # type: ignore[no-untyped-def]
    checked = 0
    for method, path in routes(inproc.client.app):
        if "{" not in path:
            continue
        response = inproc.client.request(method, fill(path, {}), headers=inproc.as_tenant("a"))
        assert response.status_code == 404, (method, path, response.status_code, response.text[:200])
        assert response.headers["content-type"].startswith(PROBLEM)
        assert response.json()["status"] == 404
        checked += 1
    assert checked >= 12


def test_another_tenants_ids_are_404_and_change_nothing(inproc, owned) -> None:  # type: ignore[no-untyped-def]
    for method, path in routes(inproc.client.app):
        if "{" not in path:
            continue
        response = inproc.client.request(method, fill(path, dict(owned)), headers=inproc.as_tenant("b"))
        assert response.status_code == 404, (method, path, response.status_code)
    mine = inproc.as_tenant("a")
    assert inproc.client.get(f"/v1/datasets/{owned['dataset_id']}", headers=mine).status_code == 200
    audit = inproc.client.get(f"/v1/audits/{owned['audit_id']}", headers=mine)
    assert audit.status_code == 200 and audit.json()["status"] != "cancelled"
    comparison = inproc.client.get(f"/v1/comparisons/{owned['comparison_id']}", headers=mine)
    assert comparison.status_code == 200 and comparison.json()["status"] != "cancelled"
    for listing in ("/v1/datasets", "/v1/audits", "/v1/encoders", "/v1/comparisons"):
        theirs = inproc.client.get(listing, headers=inproc.as_tenant("b"), params={"limit": 200}).json()
        assert theirs["items"] == [], listing


@pytest.mark.parametrize(
    "method,path,body",
    [
        ("GET", "/v1/audits/not-a-uuid", None),
        ("GET", "/v1/datasets/123", None),
        ("GET", "/v1/encoders/%00", None),
        ("GET", "/v1/audits?limit=0", None),
        ("GET", "/v1/audits?limit=100000", None),
        ("GET", "/v1/datasets?cursor=not-a-cursor", None),
        ("GET", "/v1/audits?created_after=yesterday", None),
        ("POST", "/v1/audits", {}),
        ("POST", "/v1/audits", {"real_dataset_id": "x", "generated_dataset_id": "y"}),
        (
            "POST",
            "/v1/audits",
            {"real_dataset_id": str(uuid.uuid4()), "generated_dataset_id": str(uuid.uuid4()), "nope": 1},
        ),
        (
            "POST",
            "/v1/audits",
            {
                "real_dataset_id": str(uuid.uuid4()),
                "generated_dataset_id": str(uuid.uuid4()),
                "config": {"method": "no-such-method"},
            },
        ),
        ("POST", "/v1/encoders", {"dataset_ids": []}),
        ("POST", "/v1/comparisons", {}),
        ("POST", "/v1/comparisons", {"real_dataset_id": str(uuid.uuid4()), "generated": []}),
        ("GET", "/v1/comparisons?status=done", None),
    ],
)
def test_bad_requests_are_422_problems(inproc, method: str, path: str, body: object) -> None:  # type: ignore[no-untyped-def]
    response = inproc.client.request(method, path, json=body, headers=inproc.as_tenant("a"))
    assert response.status_code == 422, (method, path, response.status_code, response.text[:300])
    problem = response.json()
    assert response.headers["content-type"].startswith(PROBLEM)
    assert (
        problem["status"] == 422
        and problem["type"].startswith("urn:synthaudit:problem:")
        and problem["detail"]
    )


def test_an_audit_of_missing_datasets_is_422_and_stores_nothing(inproc) -> None:  # type: ignore[no-untyped-def]
    headers = inproc.as_tenant("b")
    before = inproc.client.get("/v1/audits", headers=headers).json()["items"]
    response = inproc.client.post(
        "/v1/audits",
        headers=headers,
        json={"real_dataset_id": str(uuid.uuid4()), "generated_dataset_id": str(uuid.uuid4())},
    )
    assert response.status_code == 422 and "no dataset" in response.json()["detail"]
    assert inproc.client.get("/v1/audits", headers=headers).json()["items"] == before
