"""An audit whose reference comes from 'another scanner', over HTTP (the embedded runner) and the CLI: the
same inconclusive metrics document, a report that says why, results without p-values."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
import time
from pathlib import Path

import numpy as np
from inprocess_app import InProcess
from PIL import Image
from synthetic_sets import make_membership_set, random_image


def shifted_reference(folder: Path, n: int = 30, seed: int = 7) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for j in range(n):
        img = 255.0 * (random_image(rng, 32).astype(np.float64) / 255.0) ** 1.8 * 0.6
        Image.fromarray(img.clip(0, 255).astype(np.uint8)).save(folder / f"ref_{j:02d}.png")
    return folder


def upload(inproc: InProcess, role: str, folder: Path) -> str:
    files = [("files", (p.name, p.read_bytes(), "image/png")) for p in sorted(folder.glob("*.png"))]
    response = inproc.client.post(
        "/v1/datasets", headers=inproc.as_tenant("a"), data={"role": role}, files=files
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def test_an_inconclusive_audit_is_the_same_over_http_and_the_cli(inproc: InProcess, tmp_path: Path) -> None:
    from synthaudit.app.cli import main

    make_membership_set(tmp_path, n_used=10, n_unused=10, n_fresh_generated=20, seed=3, exact_copies=True)
    reference = shifted_reference(tmp_path / "reference")
    headers = inproc.as_tenant("a")
    body = {
        "real_dataset_id": upload(inproc, "real", tmp_path / "real"),
        "generated_dataset_id": upload(inproc, "generated", tmp_path / "generated"),
        "reference_dataset_id": upload(inproc, "reference", reference),
        "config": {"method": "pixels", "image_size": 32, "seed": 0},
    }
    created = inproc.client.post("/v1/audits", headers=headers, json=body)
    assert created.status_code in (201, 202), created.text
    audit_id = created.json()["id"]
    deadline = time.monotonic() + 120
    while (status := inproc.client.get(f"/v1/audits/{audit_id}", headers=headers).json()["status"]) in (
        "queued",
        "running",
    ):
        assert time.monotonic() < deadline, "the audit did not finish"
        time.sleep(0.2)
    assert status == "succeeded"

    served = inproc.client.get(f"/v1/audits/{audit_id}/metrics", headers=headers)
    assert served.status_code == 200, served.text
    metrics = served.json()
    assert metrics.pop("audit_id") == audit_id
    out, cli_metrics = tmp_path / "cli.csv", tmp_path / "cli-metrics.json"
    arguments = ["--real", str(tmp_path / "real"), "--generated", str(tmp_path / "generated")]
    arguments += ["--reference", str(reference), "--method", "pixels", "--image-size", "32", "--seed", "0"]
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        assert main(["audit", *arguments, "--out", str(out), "--metrics", str(cli_metrics)]) == 0
    document = json.loads(cli_metrics.read_text())
    assert document.pop("audit_id") is None
    assert metrics == document

    leak, check = metrics["leakage"], metrics["reference_check"]
    assert check["passed"] is False and leak["verdict"] == "inconclusive" and leak["detected"] is None
    assert metrics["calibrated"] is False and metrics["counts"]["flagged"] is None
    assert "inconclusive: the reference images differ from the candidates" in stdout.getvalue()
    rows = list(
        csv.DictReader(
            io.StringIO(inproc.client.get(f"/v1/audits/{audit_id}/results.csv", headers=headers).text)
        )
    )
    assert rows and all(r["p_value"] == "" and r["q_value"] == "" for r in rows)

    page = inproc.client.get(f"/v1/audits/{audit_id}/report", headers=headers).text
    plain = re.search(r"<span class=plain id=verdict-plain>(.*?)</span>", page, re.S)
    assert plain and plain.group(1).startswith("The reference images differ from the candidates (p = ")
    assert "id=reference-check-histogram" in page and "verdict risk" not in page
