"""Tenant listings over real HTTP: GET /v1/datasets, /v1/audits and /v1/encoders, newest first, with an
opaque keyset cursor. A walk over the pages sees every item that existed when it began exactly once, even
while new items arrive between pages; the filters (role, status, created_after/created_before) select
exactly the matching items; another tenant's items never appear (two keys, Postgres); a tampered cursor
and every out-of-range parameter is a 422 problem+json. The embedded server for most, the Postgres
deployment for the two-tenant case; the Python client and `synthaudit remote list` too."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import time
import uuid
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

PROBLEM = "application/problem+json"
LISTINGS = ("/v1/datasets", "/v1/audits", "/v1/encoders")
TINY_ENCODER = {"image_size": 32, "pretrain_images_seen": 8, "seed": 1}


def tiny_png(folder: Path, seed: int) -> Path:
    """A 16x16 grayscale PNG of random pixels."""
    path = folder / f"img{seed:04d}.png"
    pixels = np.random.default_rng(seed).integers(0, 256, (16, 16), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def upload_one(client, helpers, folder: Path, seed: int, role: str = "real") -> dict:  # type: ignore[no-untyped-def]
    response = helpers.upload(client, role, [tiny_png(folder, seed)])
    assert response.status_code == 201, response.text
    return response.json()


def walk(client, path: str, **params) -> list[dict]:  # type: ignore[no-untyped-def]
    """Every item of a listing, following next_cursor to the last page."""
    items: list[dict] = []
    cursor = None
    for _ in range(10_000):
        page = client.get(path, params={**params, **({"cursor": cursor} if cursor else {})})
        assert page.status_code == 200, page.text
        body = page.json()
        assert set(body) == {"items", "next_cursor"}
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items
    raise AssertionError("the walk did not end")


def wait_encoder(client, encoder_id: str, timeout: float = 180.0) -> str:  # type: ignore[no-untyped-def]
    """The encoder's status once its job has ended."""
    deadline = time.monotonic() + timeout
    while (status := client.get(f"/v1/encoders/{encoder_id}").json()["status"]) in ("queued", "running"):
        assert time.monotonic() < deadline, status
        time.sleep(0.25)
    return str(status)


def newest_first(items: list[dict]) -> bool:
    """Strictly descending in (created_at, id), the listings' order."""
    keys = [(item["created_at"], item["id"]) for item in items]
    return keys == sorted(keys, reverse=True) and len(set(keys)) == len(keys)


def problem(response) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == 422, (response.status_code, response.text[:300])
    assert response.headers["content-type"].startswith(PROBLEM)
    return response.json()


# --- embedded ---------------------------------------------------------------------------------------


def test_a_dataset_walk_sees_each_item_once_while_new_ones_arrive(embedded_client, helpers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    client = embedded_client
    roles = ["real", "generated", "reference"]
    mine = [upload_one(client, helpers, tmp_path, seed, roles[seed % 3]) for seed in range(7)]
    since = mine[0]["created_at"]
    # Page by page (3 per page), with two new uploads between pages: the walk neither repeats nor
    # skips any of the 7, and the new ones (newer than its position) do not enter it.
    seen: list[dict] = []
    arrived: list[dict] = []
    cursor = None
    while True:
        params = {"limit": 3, "created_after": since, **({"cursor": cursor} if cursor else {})}
        body = client.get("/v1/datasets", params=params).json()
        seen += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            break
        arrived += [upload_one(client, helpers, tmp_path, 100 + len(arrived) + i) for i in range(2)]
    assert [d["id"] for d in seen] == [d["id"] for d in reversed(mine)]
    assert newest_first(seen) and len(arrived) == 4
    # Listings carry the summary: the rejected list stays in GET /v1/datasets/{id}.
    assert all(d["rejected"] == [] and d["rejected_count"] == 0 for d in seen)
    # A new walk sees the new uploads too, newest first; the filters select exactly.
    everything = walk(client, "/v1/datasets", created_after=since, limit=200)
    assert [d["id"] for d in everything] == [d["id"] for d in reversed(mine + arrived)]
    for role in roles:
        chosen = walk(client, "/v1/datasets", created_after=since, role=role, limit=2)
        assert [d["id"] for d in chosen] == [d["id"] for d in everything if d["role"] == role]
    before = walk(client, "/v1/datasets", created_after=since, created_before=mine[3]["created_at"])
    assert [d["id"] for d in before] == [d["id"] for d in reversed(mine[:3])]


def test_a_listed_dataset_counts_its_rejected_files(embedded_client, helpers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    bad = [tmp_path / f"notes{i}.png" for i in range(3)]
    for path in bad:
        path.write_text("not an image")
    response = helpers.upload(embedded_client, "real", [tiny_png(tmp_path, 1), *bad])
    assert response.status_code == 201, response.text
    created = response.json()
    listed = embedded_client.get("/v1/datasets", params={"created_after": created["created_at"]}).json()
    item = next(d for d in listed["items"] if d["id"] == created["id"])
    assert item["rejected_count"] == 3 and item["rejected"] == []
    full = embedded_client.get(f"/v1/datasets/{created['id']}").json()
    assert full["rejected_count"] == 3 and len(full["rejected"]) == 3


def test_audits_listed_by_status_and_time_through_http_client_and_cli(
    embedded_api, embedded_client, membership_set, helpers
) -> None:  # type: ignore[no-untyped-def]
    from synthaudit.app.cli import main
    from synthaudit.app.client import ApiError, Client

    client = embedded_client
    real, generated = helpers.upload_set(client, membership_set[0])
    body = {"real_dataset_id": real, "generated_dataset_id": generated, "config": {"method": "pixels"}}
    created = []
    for i in range(4):
        response = client.post("/v1/audits", json=body)
        assert response.status_code == 202, response.text
        created.append(response.json())
        if i % 2:  # cancel every second one at once (409 if it already finished: then it keeps its status)
            assert client.post(f"/v1/audits/{created[-1]['id']}/cancel").status_code in (200, 409)
    final = {a["id"]: helpers.wait(client, a["id"])["status"] for a in created}
    since = created[0]["created_at"]
    listed = walk(client, "/v1/audits", created_after=since, limit=1)
    assert [a["id"] for a in listed] == [a["id"] for a in reversed(created)] and newest_first(listed)
    assert {a["id"]: a["status"] for a in listed} == final
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        chosen = walk(client, "/v1/audits", created_after=since, status=status, limit=1)
        assert [a["id"] for a in chosen] == [a["id"] for a in listed if final[a["id"]] == status], status
    assert "cancelled" in final.values()
    between = {"created_after": created[1]["created_at"], "created_before": created[3]["created_at"]}
    window = walk(client, "/v1/audits", **between)
    assert [a["id"] for a in window] == [created[2]["id"], created[1]["id"]]

    # The Python client: one page, then every page.
    api = Client(embedded_api.url)
    page = api.list_audits(created_after=since, limit=3)
    assert [a["id"] for a in page["items"]] == [a["id"] for a in listed[:3]] and page["next_cursor"]
    assert [a["id"] for a in api.iter_audits(created_after=since, limit=1)] == [a["id"] for a in listed]
    cancelled = [a["id"] for a in api.iter_audits("cancelled", created_after=since)]
    assert cancelled == [i for i in (a["id"] for a in listed) if final[i] == "cancelled"]
    with pytest.raises(ApiError) as refused:
        api.list_audits(limit=0)
    assert refused.value.status == 422

    # `synthaudit remote list`: one line per audit; the next page's cursor on stderr.
    def remote(*args: str) -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(["remote", "--url", embedded_api.url, "list", *args])
        return code, out.getvalue(), err.getvalue()

    code, out, err = remote("--since", since, "--limit", "2")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == [a["id"] for a in listed[:2]]
    hint = f"more: synthaudit remote --url {embedded_api.url} list --since {since} --limit 2 --cursor "
    assert hint in err  # the same service and filters: the hint runs as printed
    code, out, _ = remote("--since", since, "--cursor", err.split("--cursor ")[1].strip())
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == [a["id"] for a in listed[2:]]
    code, out, err = remote("--since", since, "--limit", "1", "--all", "--status", "cancelled")
    assert code == 0 and [line.split()[0] for line in out.splitlines()] == cancelled and err == ""
    assert all(line.split()[1] == "cancelled" for line in out.splitlines())
    code, out, err = remote("--limit", "0")
    assert code == 1 and out == "" and err.startswith("synthaudit: HTTP 422") and len(err.splitlines()) == 1


def test_encoders_listed_by_status_with_pages(embedded_client, membership_set, helpers) -> None:  # type: ignore[no-untyped-def]
    client = embedded_client
    dataset = helpers.upload(client, "real", sorted((membership_set[0] / "real").glob("*.png"))[:8]).json()
    created = []
    for i in range(3):
        response = client.post(
            "/v1/encoders", json={"dataset_id": dataset["id"], "name": f"e{i}", "config": TINY_ENCODER}
        )
        assert response.status_code == 202, response.text
        created.append(response.json())
    final = {e["id"]: wait_encoder(client, e["id"]) for e in created}
    since = created[0]["created_at"]
    listed = walk(client, "/v1/encoders", created_after=since, limit=2)
    assert [e["id"] for e in listed] == [e["id"] for e in reversed(created)] and newest_first(listed)
    for status in ("queued", "running", "succeeded", "failed", "cancelled"):
        chosen = walk(client, "/v1/encoders", created_after=since, status=status)
        assert [e["id"] for e in chosen] == [e["id"] for e in listed if final[e["id"]] == status]
    assert final[created[0]["id"]] == "succeeded"


def _cursor(value: object) -> str:
    """A cursor-shaped token: URL-safe base64 without padding of the given JSON value (or bytes)."""
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def hostile_queries(real_cursor: str) -> list[tuple[str, dict[str, str]]]:
    """(what, query) pairs no listing may answer with anything but a 422."""
    stamp, some_id = "2026-01-01T00:00:00+00:00", str(uuid.uuid4())
    cursors = {
        "first character changed": ("X" if real_cursor[0] != "X" else "Y") + real_cursor[1:],
        "cut in half": real_cursor[: len(real_cursor) // 2],
        "one character": "A",
        "not base64": "not*base64",
        "NUL": "\x00",
        "padding inside": real_cursor[:8] + "=" + real_cursor[8:],
        "10 000 characters": "A" * 10_000,
        "an object": _cursor({"created_at": stamp, "id": some_id}),
        "three elements": _cursor([stamp, some_id, "x"]),
        "a number for the time": _cursor([1767225600, some_id]),
        "not a time": _cursor(["yesterday", some_id]),
        "a time without an offset": _cursor(["2026-01-01T00:00:00", some_id]),
        "a year out of range": _cursor(["0001-01-01T00:00:00+14:00", some_id]),
        "not an id": _cursor([stamp, "../../etc/passwd"]),
        "invalid UTF-8": _cursor(b"\xff\xfe[\x00]"),
        "deep nesting": _cursor(b"[" * 80 + b"]" * 80),
        "JSON null": _cursor(None),
    }
    queries = [(f"cursor {what}", {"cursor": value}) for what, value in cursors.items()]
    for limit in ("0", "-1", "201", "99999999999999999999", "ten", "1.5", ""):
        queries.append((f"limit {limit!r}", {"limit": limit}))
    bad_times = (
        "yesterday",
        "2026-13-01",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59-14:00",
        "9" * 40,
    )
    for bad_time in bad_times:
        queries.append((f"created_after {bad_time!r}", {"created_after": bad_time}))
        queries.append((f"created_before {bad_time!r}", {"created_before": bad_time}))
    queries.append(("an empty window", {"created_after": stamp, "created_before": stamp}))
    queries.append(("a reversed window", {"created_after": "2026-02-01T00:00:00Z", "created_before": stamp}))
    return queries


def test_tampered_cursors_and_out_of_range_parameters_are_422_problems(
    embedded_client, helpers, tmp_path
) -> None:  # type: ignore[no-untyped-def]
    client = embedded_client
    for seed in range(2):
        upload_one(client, helpers, tmp_path, seed)
    real_cursor = client.get("/v1/datasets", params={"limit": 1}).json()["next_cursor"]
    assert real_cursor and client.get("/v1/datasets", params={"cursor": real_cursor}).status_code == 200
    filters = {
        "/v1/datasets": ("role", "used"),
        "/v1/audits": ("status", "done"),
        "/v1/encoders": ("status", "ok"),
    }
    answered = 0
    for path in LISTINGS:
        name, bad_value = filters[path]
        for what, query in [*hostile_queries(real_cursor), (f"{name} {bad_value!r}", {name: bad_value})]:
            body = problem(client.get(path, params=query))
            assert body["status"] == 422 and body["detail"], (path, what)
            for value in query.values():  # submitted values are never echoed back
                assert len(value) < 6 or value not in json.dumps(body), (path, what)
            answered += 1
    assert answered == len(LISTINGS) * (len(hostile_queries(real_cursor)) + 1) > 100
    assert client.get("/readyz").status_code == 200


# --- Postgres: two tenants --------------------------------------------------------------------------


def test_listings_are_per_tenant_on_postgres(api, pg_url, proc_tools, helpers, tmp_path) -> None:  # type: ignore[no-untyped-def]
    import httpx

    tenants = {}
    for name in ("x", "y"):
        key = proc_tools.create_api_key(pg_url, f"listing-{name}-{uuid.uuid4().hex[:8]}")
        tenants[name] = httpx.Client(base_url=api.url, timeout=60.0, headers=proc_tools.bearer(key))
    try:
        owned: dict[str, dict[str, list[str]]] = {}
        for n, (name, client) in enumerate(tenants.items()):
            real = [upload_one(client, helpers, tmp_path, 10 * n + i, "real") for i in range(3 - n)]
            generated = upload_one(client, helpers, tmp_path, 10 * n + 9, "generated")
            audits = []
            for dataset in real:
                body = {"real_dataset_id": dataset["id"], "generated_dataset_id": generated["id"]}
                response = client.post("/v1/audits", json={**body, "config": {"method": "pixels"}})
                assert response.status_code == 202, response.text
                audits.append(response.json()["id"])
                assert client.post(f"/v1/audits/{audits[-1]}/cancel").status_code in (200, 409)  # no work
            encoder = client.post("/v1/encoders", json={"dataset_id": real[0]["id"], "config": TINY_ENCODER})
            assert encoder.status_code == 202, encoder.text
            owned[name] = {
                "/v1/datasets": [generated["id"], *(d["id"] for d in reversed(real))],
                "/v1/audits": list(reversed(audits)),
                "/v1/encoders": [encoder.json()["id"]],
            }
        for name, client in tenants.items():
            for path in LISTINGS:
                listed = walk(client, path, limit=1)  # a cursor per item, on timestamptz
                assert [item["id"] for item in listed] == owned[name][path], (name, path)
                assert newest_first(listed)
        # A cursor carries no authority: tenant y following tenant x's cursor still sees only its own.
        x_cursor = tenants["x"].get("/v1/datasets", params={"limit": 1}).json()["next_cursor"]
        followed = tenants["y"].get("/v1/datasets", params={"cursor": x_cursor}).json()
        assert not {d["id"] for d in followed["items"]} & set(owned["x"]["/v1/datasets"])
        assert problem(tenants["y"].get("/v1/audits", params={"limit": 201}))["status"] == 422
        assert problem(tenants["y"].get("/v1/audits", params={"cursor": x_cursor[1:]}))["status"] == 422
    finally:
        for client in tenants.values():
            client.close()
