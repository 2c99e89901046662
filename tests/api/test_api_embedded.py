"""The embedded default end to end: uvicorn with no DATABASE_URL or broker (SQLite + in-process runner)."""

from __future__ import annotations

import csv
import io
import shutil
import sys
from pathlib import Path

import pytest


def test_embedded_audit_end_to_end(embedded_client, embedded_api, membership_set, helpers) -> None:
    client, (root, truth) = embedded_client, membership_set
    assert (embedded_api.storage.parent / "synthaudit.db").exists()  # SQLite under SYNTHAUDIT_HOME
    real, generated = helpers.upload_set(client, root)
    response = client.post(
        "/v1/audits",
        json={
            "real_dataset_id": real,
            "generated_dataset_id": generated,
            "config": {"method": "pixels", "image_size": 32},
        },
    )
    assert response.status_code == 202, response.text
    audit_id = response.json()["id"]
    done = helpers.wait(client, audit_id)
    assert done["status"] == "succeeded", done
    assert done["progress"] == 100.0

    rows = list(csv.DictReader(io.StringIO(client.get(f"/v1/audits/{audit_id}/results.csv").text)))
    assert len(rows) == len(truth) == 20
    for row in rows:
        if truth[row["id"]] == 1:
            assert row["used"] == "1" and float(row["similarity"]) == pytest.approx(1.0, abs=1e-4)
    metrics = client.get(f"/v1/audits/{audit_id}/metrics").json()
    assert metrics["metrics"] is None and metrics["decision_rule"] == "prior"  # no labels: used_fraction 0.5
    assert 8 <= metrics["counts"]["used"] <= 11

    workdir = embedded_api.storage / "audits" / audit_id
    assert workdir.exists()
    assert client.delete(f"/v1/audits/{audit_id}").status_code == 204
    assert not workdir.exists()
    for dataset_id in (real, generated):
        assert client.delete(f"/v1/datasets/{dataset_id}").status_code == 204
        assert not (embedded_api.storage / "datasets" / dataset_id).exists()


def test_the_vit_token_method_runs_through_the_api(
    embedded_client, embedded_api, membership_set, helpers
) -> None:
    """The opt-in `density_attribution_vit` is accepted by the API; its fitted ViT state stays in the work
    folder; with labels its cross-validated AUC on the exact copies is perfect."""
    client, (root, truth) = embedded_client, membership_set
    real, generated = helpers.upload_set(client, root)
    body = {
        "real_dataset_id": real,
        "generated_dataset_id": generated,
        "labels": truth,
        "config": {"method": "density_attribution_vit", "image_size": 32},
    }
    response = client.post("/v1/audits", json=body)
    assert response.status_code == 202, response.text
    done = helpers.wait(client, response.json()["id"])
    assert done["status"] == "succeeded", done
    assert (embedded_api.storage / "audits" / done["id"] / "vit_tokens.safetensors").exists()
    metrics = client.get(f"/v1/audits/{done['id']}/metrics").json()
    assert metrics["decision_rule"] == "fdr" and metrics["calibrated"]  # labels 0: the known-not-used
    assert metrics["cross_validated"]["auc"] == pytest.approx(1.0)
    assert client.delete(f"/v1/audits/{done['id']}").status_code == 204


def test_a_failed_audit_says_why(embedded_client, embedded_api, membership_set, helpers) -> None:
    client = embedded_client
    real, generated = helpers.upload_set(client, membership_set[0])
    shutil.rmtree(embedded_api.storage / "datasets" / real)  # files lost behind the service's back
    body = {"real_dataset_id": real, "generated_dataset_id": generated, "config": {"method": "pixels"}}
    audit = helpers.wait(client, client.post("/v1/audits", json=body).json()["id"])
    assert audit["status"] == "failed" and audit["stage"] == "decode"
    assert audit["error"] == "decode: the audit's input files are missing (was a dataset deleted?)"
    metrics = client.get(f"/v1/audits/{audit['id']}/metrics")
    assert metrics.status_code == 409 and "input files are missing" in metrics.json()["detail"]


def test_synthaudit_serve_runs_the_embedded_default(proc_tools, tmp_path: Path) -> None:
    import httpx

    port = proc_tools.free_port()
    argv = [
        sys.executable,
        "-c",
        "from synthaudit.app.cli import main; raise SystemExit(main())",
        "serve",
        "--port",
        str(port),
    ]
    proc = proc_tools.Proc(
        "synthaudit serve", argv, proc_tools.clean_env(SYNTHAUDIT_HOME=str(tmp_path)), tmp_path / "serve.log"
    )

    def ready() -> bool:
        try:
            return httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        proc.wait_for(ready, 60, "readiness")
        assert "embedded mode" in proc.output() and "in-process runner" in proc.output()
        assert (tmp_path / "synthaudit.db").exists()
    finally:
        proc.stop()
