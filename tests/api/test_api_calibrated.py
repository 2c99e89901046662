"""Calibrated verdicts over HTTP on the embedded default (SQLite + in-process runner): known-not-used images
given as labels (used=0) or as a reference dataset give the CLI's results.csv byte for byte and the CLI's
`--metrics` document (apart from audit_id); an audit without them stays uncalibrated."""

from __future__ import annotations

import csv
import io
from pathlib import Path

FAST = {"method": "pixels", "image_size": 32, "seed": 0}
CLI_FAST = ["--method", "pixels", "--image-size", "32", "--seed", "0"]
HEADER = "id,used,score,nearest_generated,similarity,p_value,q_value,role"


def rows_of(data: bytes) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(data.decode())))


def run(client, helpers, body: dict) -> str:  # type: ignore[no-untyped-def]
    """POST the audit, wait for it to succeed, return its id."""
    response = client.post("/v1/audits", json=body)
    assert response.status_code == 202, response.text
    done = helpers.wait(client, response.json()["id"])
    assert done["status"] == "succeeded", done
    return str(done["id"])


def test_labels_of_not_used_images_calibrate_the_audit_as_the_cli_does(
    embedded_client, membership_set, helpers, tmp_path: Path
) -> None:
    client, (root, truth) = embedded_client, membership_set
    not_used = {k: 0 for k, v in sorted(truth.items()) if v == 0}  # only used=0 rows: the reference
    (tmp_path / "labels.csv").write_text("id,used\n" + "".join(f"{k},0\n" for k in not_used))
    real, generated = helpers.upload_set(client, root)
    body = {"real_dataset_id": real, "generated_dataset_id": generated, "labels": not_used, "config": FAST}
    audit_id = run(client, helpers, body)
    csv_bytes, metrics = helpers.outputs(client, audit_id)

    inputs = ["--real", str(root / "real"), "--generated", str(root / "generated")]
    cli_csv, cli_metrics = helpers.cli_outputs(
        [*inputs, "--labels", str(tmp_path / "labels.csv"), *CLI_FAST], tmp_path / "cli"
    )
    assert csv_bytes == cli_csv
    assert metrics == cli_metrics

    assert csv_bytes.decode().splitlines()[0] == HEADER
    rows = rows_of(csv_bytes)
    assert len(rows) == 20
    assert {r["id"] for r in rows if r["role"] == "reference"} == set(not_used)
    for row in rows:
        assert (row["p_value"] != "") == (row["role"] == "candidate")
        if truth[row["id"]] == 1:  # the exact copies: flagged at FDR 0.1
            assert row["used"] == "1"
    assert metrics["calibrated"] is True and metrics["decision_rule"] == "fdr" and metrics["fdr"] == 0.1
    assert metrics["leakage"]["detected"] is True
    assert metrics["counts"]["reference"] == 12 and metrics["counts"]["candidates"] == 8


def test_a_reference_dataset_calibrates_the_audit_as_the_cli_does(
    embedded_client, membership_set, reference_set, helpers, tmp_path: Path
) -> None:
    client, (root, truth) = embedded_client, membership_set
    real, generated = helpers.upload_set(client, root)
    uploaded = helpers.upload(client, "reference", sorted(reference_set.glob("*.png")))
    assert uploaded.status_code == 201, uploaded.text
    assert uploaded.json()["role"] == "reference" and uploaded.json()["image_count"] == 40
    reference = uploaded.json()["id"]
    body = {
        "real_dataset_id": real,
        "generated_dataset_id": generated,
        "reference_dataset_id": reference,
        "config": FAST,
    }
    audit = client.post("/v1/audits", json=body).json()
    assert audit["reference_dataset_id"] == reference
    assert audit["trail"]["inputs"]["reference"]["images"] == 40
    done = helpers.wait(client, audit["id"])
    assert done["status"] == "succeeded", done
    csv_bytes, metrics = helpers.outputs(client, audit["id"])

    inputs = ["--real", str(root / "real"), "--generated", str(root / "generated")]
    cli_csv, cli_metrics = helpers.cli_outputs(
        [*inputs, "--reference", str(reference_set), *CLI_FAST], tmp_path / "cli"
    )
    assert csv_bytes == cli_csv
    assert metrics == cli_metrics

    rows = rows_of(csv_bytes)
    assert [r["id"] for r in rows] == sorted(truth)  # the reference set's images get no row
    assert all(r["role"] == "candidate" and r["p_value"] != "" for r in rows)
    assert {r["id"] for r in rows if r["used"] == "1"} == {k for k, v in truth.items() if v == 1}
    assert metrics["calibrated"] is True and metrics["decision_rule"] == "fdr"
    assert metrics["counts"]["reference"] == 40 and metrics["counts"]["real"] == 20
    clef = client.get(f"/v1/audits/{audit['id']}/results.csv", params={"format": "imageclef"}).text
    assert clef.splitlines() == [f"{r['id']},{r['used']}" for r in rows]

    # In use by a queued or running audit it cannot be deleted; afterwards it can.
    assert client.delete(f"/v1/datasets/{reference}").status_code == 204
    assert client.get(f"/v1/audits/{audit['id']}").json()["reference_dataset_id"] is None


def test_without_known_not_used_images_the_audit_is_uncalibrated(
    embedded_client, membership_set, helpers
) -> None:
    client, (root, _) = embedded_client, membership_set
    real, generated = helpers.upload_set(client, root)
    body = {"real_dataset_id": real, "generated_dataset_id": generated, "config": FAST}
    audit_id = run(client, helpers, body)
    csv_bytes, metrics = helpers.outputs(client, audit_id)
    assert csv_bytes.decode().splitlines()[0] == HEADER
    assert all(r["p_value"] == "" and r["q_value"] == "" for r in rows_of(csv_bytes))
    assert metrics["calibrated"] is False and metrics["leakage"] is None and metrics["fdr"] is None
    assert metrics["power"] is None and metrics["decision_rule"] == "prior"
    assert metrics["reference_check"] is None and metrics["reference_overlap"] is None
    assert metrics["counts"]["flagged"] is None and metrics["counts"]["not_flagged"] is None
    assert set(metrics) == {
        "method",
        "decision_rule",
        "threshold",
        "calibrated",
        "fdr",
        "counts",
        "reference_check",
        "leakage",
        "reference_overlap",
        "power",
        "registered_copies",
        "metrics",
        "cross_validated",
        "rejected",
    }


def test_reference_datasets_must_be_references(embedded_client, membership_set, helpers) -> None:
    client, (root, _) = embedded_client, membership_set
    real, generated = helpers.upload_set(client, root)
    body = {"real_dataset_id": real, "generated_dataset_id": generated, "config": FAST}
    for wrong in (real, generated):
        response = client.post("/v1/audits", json={**body, "reference_dataset_id": wrong})
        assert response.status_code == 422 and response.headers["content-type"].startswith(
            "application/problem+json"
        )
        assert "reference_dataset_id" in response.json()["detail"] and "role" in response.json()["detail"]
    fdr = client.post("/v1/audits", json={**body, "config": {**FAST, "decision": "fdr"}})
    assert fdr.status_code == 422 and "known not to be used" in fdr.json()["detail"]
