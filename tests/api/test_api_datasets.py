"""Datasets over HTTP (uvicorn + Postgres): upload, read, list images, delete; errors as problem+json."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

PROBLEM = "application/problem+json"


def write_png(path: Path, seed: int, size: int = 16) -> Path:
    arr = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return path


def assert_problem(response, status: int) -> dict:  # type: ignore[no-untyped-def]
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    body = response.json()
    assert body["status"] == status and body["title"] and "type" in body and "detail" in body
    return body


def test_upload_read_list_delete(client, api, helpers, tmp_path: Path) -> None:
    pngs = [write_png(tmp_path / f"img{i}.png", i) for i in range(3)]
    archive = tmp_path / "more.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(write_png(tmp_path / "z" / "img9.png", 9), "img9.png")
        zf.writestr("readme.txt", "not an image")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nbroken")

    response = helpers.upload(client, "real", [*pngs, archive, tmp_path / "broken.png"], name="site A")
    assert response.status_code == 201, response.text
    dataset = response.json()
    assert response.headers["location"] == f"/v1/datasets/{dataset['id']}"
    assert dataset["role"] == "real" and dataset["name"] == "site A"
    assert dataset["image_count"] == 4
    rejected = {r["name"]: r["reason"] for r in dataset["rejected"]}
    assert set(rejected) == {"broken.png", "more.zip:readme.txt"}

    assert client.get(f"/v1/datasets/{dataset['id']}").json() == dataset
    page = client.get(f"/v1/datasets/{dataset['id']}/images", params={"limit": 2}).json()
    assert page["total"] == 4 and [i["id"] for i in page["items"]] == ["img0", "img1"]
    files = api.storage / "datasets" / dataset["id"] / "images"
    assert sorted(p.name for p in files.iterdir()) == ["img0.png", "img1.png", "img2.png", "img9.png"]

    assert client.delete(f"/v1/datasets/{dataset['id']}").status_code == 204
    assert not files.exists()
    assert_problem(client.get(f"/v1/datasets/{dataset['id']}"), 404)
    assert_problem(client.delete(f"/v1/datasets/{dataset['id']}"), 404)


def test_upload_validation_errors(client, helpers, tmp_path: Path) -> None:
    png = write_png(tmp_path / "a.png", 1)
    body = assert_problem(helpers.upload(client, "training", [png]), 422)
    assert body["errors"][0]["loc"][-1] == "role"
    assert_problem(client.post("/v1/datasets", data={"role": "real"}), 422)  # no files
    (tmp_path / "x.txt").write_text("x")
    body = assert_problem(helpers.upload(client, "real", [tmp_path / "x.txt"]), 422)
    assert body["rejected"][0]["name"] == "x.txt"


def test_unknown_routes_and_ids_are_problems(client) -> None:
    assert_problem(client.get("/v1/nothing-here"), 404)
    assert_problem(client.get("/v1/datasets/not-a-uuid"), 422)
    assert_problem(client.get("/v1/datasets/00000000-0000-0000-0000-000000000000"), 404)


def test_health_readiness_and_openapi(client) -> None:
    from importlib.metadata import version

    assert client.get("/healthz").json() == {"status": "ok", "version": version("synthaudit")}
    ready = client.get("/readyz").json()
    assert ready == {"status": "ok", "checks": {"database": "ok", "broker": "ok", "storage": "ok"}}
    assert client.get("/docs").status_code == 200
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/datasets", "/v1/audits", "/v1/audits/{audit_id}/results.csv"} <= set(paths)


def test_embedded_upload_limit_is_413(embedded_client) -> None:
    blob = io.BytesIO(b"\0" * 3_500_000)
    response = embedded_client.post(
        "/v1/datasets", data={"role": "real"}, files=[("files", ("big.png", blob))]
    )
    assert_problem(response, 413)
    assert embedded_client.get("/readyz").json()["checks"] == {
        "database": "ok",
        "runner": "ok",
        "storage": "ok",
    }
