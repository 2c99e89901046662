"""Query parameters are bounded (issue 14 #14): an offset past what the database's integers hold
(`offset=99999999999999999999` on /v1/datasets/{id}/images gave a 500) and every other extreme value of
every query parameter in the OpenAPI document is a 422 problem+json, never a 5xx. Over HTTP, on the
embedded service (SQLite) and on the distributed one (Postgres)."""

from __future__ import annotations

import pytest

HUGE = "99999999999999999999"  # 10^20: past int64
EXTREMES = {
    "integer": [HUGE, str(2**63), str(2**63 - 1), "-" + HUGE, "1e309", "NaN"],
    "datetime": ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00", "99999-01-01", "1e30"],
    "string": ["x" * 5000, "\u0000", "%00"],
}


def _dataset(client, helpers, membership_set) -> str:  # type: ignore[no-untyped-def]
    root, _ = membership_set
    response = helpers.upload(client, "real", sorted((root / "real").glob("*.png"))[:3])
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _assert_problem(response, status: int | None = None) -> None:  # type: ignore[no-untyped-def]
    request = response.request
    where = f"{request.method} {request.url} -> {response.status_code}: {response.text[:300]}"
    assert response.status_code < 500, where
    if status is not None:
        assert response.status_code == status, where
    if response.status_code >= 400:
        assert response.headers["content-type"].startswith("application/problem+json"), where


@pytest.mark.parametrize("deployment", ["embedded", "distributed"])
def test_huge_offset_on_images_is_a_422(request, helpers, membership_set, deployment: str) -> None:
    client = request.getfixturevalue("embedded_client" if deployment == "embedded" else "client")
    dataset = _dataset(client, helpers, membership_set)
    for offset in (HUGE, str(2**63), str(2**63 - 1), str(2**31)):
        response = client.get(f"/v1/datasets/{dataset}/images", params={"offset": offset})
        _assert_problem(response, 422)
        assert "offset" in response.json()["detail"]
    page = client.get(f"/v1/datasets/{dataset}/images", params={"offset": 2**31 - 1, "limit": 1000})
    assert page.status_code == 200 and page.json()["items"] == []  # the bound itself is fine
    assert client.get(f"/v1/datasets/{dataset}/images", params={"limit": HUGE}).status_code == 422


def _query_parameters(document: dict) -> list[tuple[str, str, dict]]:  # type: ignore[type-arg]
    """(path, name, schema) of every query parameter of every GET operation."""
    out = []
    for path, operations in document["paths"].items():
        for parameter in operations.get("get", {}).get("parameters", []):
            if parameter["in"] == "query":
                schema = parameter.get("schema", {})
                options = schema.get("anyOf", [schema])
                concrete = next((o for o in options if o.get("type") != "null"), {})
                out.append((path, parameter["name"], concrete))
    return out


def _kind(schema: dict) -> str | None:  # type: ignore[type-arg]
    if schema.get("type") == "integer":
        return "integer"
    if schema.get("type") == "string" and schema.get("format") == "date-time":
        return "datetime"
    if schema.get("type") == "string" and "enum" not in schema:
        return "string"
    return None


@pytest.mark.parametrize("deployment", ["embedded", "distributed"])
def test_every_query_parameter_is_bounded(request, helpers, membership_set, deployment: str) -> None:
    client = request.getfixturevalue("embedded_client" if deployment == "embedded" else "client")
    dataset = _dataset(client, helpers, membership_set)
    document = client.get("/openapi.json").json()
    parameters = _query_parameters(document)
    assert any(name == "offset" for _, name, _ in parameters)
    tried = 0
    for path, name, schema in parameters:
        kind = _kind(schema)
        if kind == "integer":
            assert "maximum" in schema, f"{path} {name}: no upper bound"
        for value in EXTREMES.get(kind or "", []):
            concrete = path.replace("{dataset_id}", dataset).replace("{audit_id}", dataset)
            concrete = concrete.replace("{encoder_id}", dataset)
            _assert_problem(client.get(concrete, params={name: value}))
            tried += 1
    assert tried >= 10


@pytest.mark.parametrize("deployment", ["embedded", "distributed"])
def test_pretraining_budget_and_seed_are_bounded(request, helpers, membership_set, deployment: str) -> None:
    """Issue 14 #15: pretrain_images_seen above 50 M (10^30 was queued, a job that never ends) and seeds
    past what torch takes are 422s at POST /v1/audits and POST /v1/encoders; the bound itself is fine."""
    from synthaudit.app.schemas import MAX_PRETRAIN_IMAGES_SEEN, MAX_SEED

    client = request.getfixturevalue("embedded_client" if deployment == "embedded" else "client")
    real = _dataset(client, helpers, membership_set)
    root, _ = membership_set
    generated = helpers.upload(client, "generated", sorted((root / "generated").glob("*.png"))[:3])
    body = {"real_dataset_id": real, "generated_dataset_id": generated.json()["id"]}
    for config in (
        {"pretrain_images_seen": MAX_PRETRAIN_IMAGES_SEEN + 1},
        {"pretrain_images_seen": 10**30},
        {"seed": MAX_SEED + 1},
        {"seed": 10**20},
    ):
        audit = client.post("/v1/audits", json={**body, "config": config})
        _assert_problem(audit, 422)
        assert next(iter(config)) in audit.json()["detail"]
        encoder = client.post("/v1/encoders", json={"dataset_id": real, "config": config})
        _assert_problem(encoder, 422)
    encoder = client.post(
        "/v1/encoders",
        json={
            "dataset_id": real,
            "config": {"pretrain_images_seen": MAX_PRETRAIN_IMAGES_SEEN, "seed": MAX_SEED},
        },
    )
    assert encoder.status_code == 202, encoder.text
    assert client.delete(f"/v1/encoders/{encoder.json()['id']}").status_code == 204  # the job stops
