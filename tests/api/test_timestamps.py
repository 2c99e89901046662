"""Every timestamp the API returns is RFC 3339 in UTC with a `Z` (issue 20), the same string on POST, GET,
listings and the audit trail, on the embedded default (SQLite, which hands timestamps back without an
offset) and on the distributed deployment (Postgres)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

RFC3339_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["embedded_client", "client"])
def test_timestamps_are_rfc3339_with_z_everywhere(
    backend: str, request: pytest.FixtureRequest, membership_set: tuple[Path, dict[str, int]], helpers
) -> None:  # type: ignore[no-untyped-def]
    client = request.getfixturevalue(backend)
    root, _ = membership_set
    posted = helpers.upload(client, "real", sorted((root / "real").glob("*.png"))[:3]).json()
    assert RFC3339_Z.match(posted["created_at"]), posted["created_at"]
    got = client.get(f"/v1/datasets/{posted['id']}").json()
    assert got["created_at"] == posted["created_at"]
    listed = [
        d
        for d in client.get("/v1/datasets", params={"limit": 100}).json()["items"]
        if d["id"] == posted["id"]
    ]
    assert listed and listed[0]["created_at"] == posted["created_at"]
    generated = helpers.upload(client, "generated", sorted((root / "generated").glob("*.png"))[:3]).json()
    body = {
        "real_dataset_id": posted["id"],
        "generated_dataset_id": generated["id"],
        "config": {"method": "pixels", "image_size": 32},
    }
    audit = client.post("/v1/audits", json=body).json()
    assert RFC3339_Z.match(audit["created_at"]), audit["created_at"]
    got_audit = client.get(f"/v1/audits/{audit['id']}").json()
    assert got_audit["created_at"] == audit["created_at"] == got_audit["trail"]["created_at"]
    listed_audits = [
        a for a in client.get("/v1/audits", params={"limit": 100}).json()["items"] if a["id"] == audit["id"]
    ]
    assert listed_audits and listed_audits[0]["created_at"] == audit["created_at"]
    if (
        backend == "embedded_client"
    ):  # the in-process runner finishes it (the distributed API has no worker here)
        done = helpers.wait(client, audit["id"])
        trail = done["trail"]
        for key in ("started_at", "finished_at"):
            assert RFC3339_Z.match(done[key]) and trail[key] == done[key], (key, done[key], trail[key])
