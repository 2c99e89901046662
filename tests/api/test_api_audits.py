"""POST /v1/audits validation and the audit routes' 404s, as problem+json (nothing is queued here)."""

from __future__ import annotations

import uuid

import pytest

PROBLEM = "application/problem+json"


@pytest.fixture(scope="module")
def datasets(api, membership_set, helpers) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    import httpx

    with httpx.Client(base_url=api.url, timeout=60.0, headers=api.headers) as c:
        return helpers.upload_set(c, membership_set[0])


def problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    return response.json()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"real_dataset_id": str(uuid.uuid4())}, "no dataset"),
        ({"swap": True}, "role"),
        ({"config": {"method": "pixels", "colour": "red"}}, "colour"),
        ({"config": {"method": "no-such-method"}}, "unknown method"),
        ({"config": {"decision": "fixed"}}, "threshold"),
        ({"config": {"decision": "calibrated"}, "labels": {"r0001": 1}}, "both used"),
        ({"config": {"method": "similarity", "encoder": "resnet50"}}, "resnet50"),
        ({"config": {"k": 0}}, "k"),
        ({"labels": {"r0001": 2}}, "labels"),
        ({"labels": {"not-an-image": 1}}, "not-an-image"),
        ({"extra": 1}, "extra"),
        ({"reference": "generated"}, "reference_dataset_id: dataset"),  # another role
        ({"reference": "real"}, "not 'reference'"),
        ({"reference_dataset_id": str(uuid.uuid4())}, "reference_dataset_id: no dataset"),
        ({"config": {"decision": "fdr"}}, "known not to be used"),
        ({"config": {"decision": "fdr"}, "labels": {"r0001": 1}}, "known not to be used"),
        ({"config": {"fdr": 1.5}}, "fdr"),
        ({"config": {"fdr": 0}}, "fdr"),
        ({"config": {"alignment": "on"}}, "alignment"),
    ],
)
def test_invalid_audit_requests_are_422(client, datasets, change: dict, needle: str) -> None:
    real, generated = datasets
    body = {"real_dataset_id": real, "generated_dataset_id": generated, "config": {"method": "pixels"}}
    if change.pop("swap", False):
        body["real_dataset_id"], body["generated_dataset_id"] = generated, real
    if role := change.pop("reference", None):
        body["reference_dataset_id"] = {"real": real, "generated": generated}[role]
    body.update(change)
    details = problem(client.post("/v1/audits", json=body), 422)
    assert needle in details["detail"] + str(details.get("errors", ""))


def test_malformed_json_is_422(client) -> None:
    response = client.post("/v1/audits", content=b"{not json", headers={"content-type": "application/json"})
    assert problem(response, 422)["errors"]


def test_unknown_audits_are_404(client) -> None:
    missing = uuid.uuid4()
    for method, path in [
        ("GET", ""),
        ("GET", "/results.csv"),
        ("GET", "/metrics"),
        ("POST", "/cancel"),
        ("DELETE", ""),
    ]:
        body = problem(client.request(method, f"/v1/audits/{missing}{path}"), 404)
        assert str(missing) in body["detail"]
