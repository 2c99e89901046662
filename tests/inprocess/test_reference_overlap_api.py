"""A reference that repeats real candidates, over HTTP (the embedded runner): the same files are a 422
problem at submission; the same pixels in other bytes fail the audit at decode with the clear message; with
config drop_reference_duplicates the audit runs without those candidates."""

from __future__ import annotations

import csv
import io
import time

import numpy as np
from inprocess_app import InProcess
from PIL import Image
from synthetic_sets import random_image

FAST = {"method": "pixels", "image_size": 32, "seed": 0}
PROBLEM = "application/problem+json"


def _png(img: np.ndarray, compress_level: int = 6) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def _images(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [random_image(rng, 32) for _ in range(n)]


def _upload(inproc: InProcess, role: str, named: dict[str, bytes]) -> str:
    files = [("files", (name, data, "image/png")) for name, data in named.items()]
    response = inproc.client.post(
        "/v1/datasets", headers=inproc.as_tenant("a"), data={"role": role}, files=files
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _wait(inproc: InProcess, audit_id: str) -> dict:
    deadline = time.monotonic() + 120
    while True:
        audit = inproc.client.get(f"/v1/audits/{audit_id}", headers=inproc.as_tenant("a")).json()
        if audit["status"] not in ("queued", "running"):
            return dict(audit)
        assert time.monotonic() < deadline, "the audit did not finish"
        time.sleep(0.2)


def _datasets(inproc: InProcess, compress_level: int) -> dict[str, str]:
    real = _images(1, 30)
    reference = {
        f"q{i:03d}.png": _png(img, compress_level) for i, img in enumerate(real[:4] + _images(2, 20))
    }
    return {
        "real_dataset_id": _upload(
            inproc, "real", {f"r{i:03d}.png": _png(img) for i, img in enumerate(real)}
        ),
        "generated_dataset_id": _upload(
            inproc, "generated", {f"g{i:03d}.png": _png(img) for i, img in enumerate(_images(3, 30))}
        ),
        "reference_dataset_id": _upload(inproc, "reference", reference),
    }


def test_the_same_files_in_the_reference_are_a_422_problem(inproc: InProcess) -> None:
    body = {**_datasets(inproc, compress_level=6), "config": FAST}
    response = inproc.client.post("/v1/audits", headers=inproc.as_tenant("a"), json=body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    detail = response.json()["detail"]
    assert "4 real candidate image(s) are also in the reference" in detail
    assert "r000, r001, r002, r003" in detail and "drop_reference_duplicates" in detail


def test_the_same_pixels_in_other_bytes_fail_the_audit_at_decode(inproc: InProcess) -> None:
    body = {**_datasets(inproc, compress_level=1), "config": FAST}  # other bytes: found at decode
    response = inproc.client.post("/v1/audits", headers=inproc.as_tenant("a"), json=body)
    assert response.status_code == 202, response.text
    audit = _wait(inproc, response.json()["id"])
    assert audit["status"] == "failed"
    assert audit["error"].startswith("decode: 4 real candidate image(s) are also in the reference")
    assert "r000, r001, r002, r003" in audit["error"]


def test_with_the_option_the_duplicates_are_dropped(inproc: InProcess) -> None:
    body = {**_datasets(inproc, compress_level=6), "config": {**FAST, "drop_reference_duplicates": True}}
    response = inproc.client.post("/v1/audits", headers=inproc.as_tenant("a"), json=body)
    assert response.status_code == 202, response.text
    audit = _wait(inproc, response.json()["id"])
    assert audit["status"] == "succeeded", audit
    headers = inproc.as_tenant("a")
    results = inproc.client.get(f"/v1/audits/{audit['id']}/results.csv", headers=headers)
    rows = list(csv.DictReader(io.StringIO(results.text)))
    candidates = {r["id"] for r in rows if r["role"] == "candidate"}
    assert len(candidates) == 26 and not candidates & {"r000", "r001", "r002", "r003"}
    metrics = inproc.client.get(f"/v1/audits/{audit['id']}/metrics", headers=headers).json()
    assert metrics["counts"]["candidates"] == 26
    assert metrics["reference_overlap"]["dropped_candidates"] == 4  # the decide stage carries overlap.json
