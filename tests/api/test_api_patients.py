"""DICOM studies: images grouped by pseudonymous patient/series keys, labels per patient,
GET /v1/audits/{id}/patients.csv (rules any | mean-score) and the patients in the report."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from dicom_sets import LAYOUT, make_dicom_set

from models.groups import pseudonym


@pytest.fixture(scope="module")
def dicom_set(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_dicom_set(tmp_path_factory.mktemp("dicom"))


def upload(client, helpers, root: Path) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    ids = []
    for role, pattern in (("real", "*.dcm"), ("generated", "*.png")):
        response = helpers.upload(client, role, sorted((root / role).glob(pattern)))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids[0], ids[1]


def test_dicom_patients_are_grouped_labelled_and_reported(
    embedded_client, embedded_api, dicom_set, helpers
) -> None:
    client = embedded_client
    real, generated = upload(client, helpers, dicom_set.root)
    key = {raw: pseudonym("patient", raw) for raw in LAYOUT}  # GROUP_KEY_SECRET is empty on this server
    raw = list(LAYOUT)
    labels = {raw[0]: 1, key[raw[1]]: 1, raw[3]: 0, raw[4]: 0}  # raw PatientIDs or their pseudonyms
    body = {
        "real_dataset_id": real,
        "generated_dataset_id": generated,
        "patient_labels": labels,
        "config": {"method": "pixels", "image_size": 32},
    }
    unknown = client.post("/v1/audits", json={**body, "patient_labels": {"NOBODY": 1}})
    assert unknown.status_code == 422 and "NOBODY" not in unknown.text  # raw ids are never echoed
    audit = client.post("/v1/audits", json=body)
    assert audit.status_code == 202, audit.text
    audit = audit.json()
    assert audit["labelled_patients"] == 4 and audit["labelled_images"] == 12  # 4 patients x 3 images
    assert helpers.wait(client, audit["id"])["status"] == "succeeded"

    images = list(csv.DictReader(io.StringIO(client.get(f"/v1/audits/{audit['id']}/results.csv").text)))
    assert {r["id"] for r in images if r["used"] == "1"} == dicom_set.copied
    threshold = client.get(f"/v1/audits/{audit['id']}/metrics").json()["threshold"]

    def patients(rule: str | None = None) -> dict[str, dict[str, str]]:
        url = f"/v1/audits/{audit['id']}/patients.csv" + (f"?aggregation={rule}" if rule else "")
        response = client.get(url)
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/csv")
        return {r["patient"]: r for r in csv.DictReader(io.StringIO(response.text))}

    by_any = patients()
    assert set(by_any) == set(key.values())
    used_any = {p for p, r in by_any.items() if r["used"] == "1"}
    assert used_any == {key[raw[0]], key[raw[1]], key[raw[2]]}
    p1, p3, p5 = by_any[key[raw[0]]], by_any[key[raw[2]]], by_any[key[raw[4]]]
    assert (p1["images"], p1["images_used"], p1["studies"], p1["series"]) == ("3", "3", "1", "2")
    assert (p3["images_used"], p3["series"]) == ("1", "3") and p5["images_used"] == "0"
    by_mean = patients("mean-score")
    assert {p for p, r in by_mean.items() if r["used"] == "1"} == {key[raw[0]], key[raw[1]]}
    assert float(by_mean[key[raw[2]]]["mean_score"]) < threshold <= float(by_mean[key[raw[2]]]["max_score"])

    report = client.get(f"/v1/audits/{audit['id']}/report").text
    assert "from 3 of 6 patients" in report and "<h2>Patients</h2>" in report
    assert key[raw[0]] in report and "On the 4 labelled patients" in report
    # Pseudonyms only: no raw identifier in any answer, nor in the database file.
    for text in (
        report,
        client.get(f"/v1/audits/{audit['id']}/patients.csv").text,
        client.get(f"/v1/audits/{audit['id']}").text,
    ):
        assert not re.search(r"PAT-\d{4}", text)
    home = embedded_api.storage.parent
    for db_file in home.glob("synthaudit.db*"):
        assert b"PAT-000" not in db_file.read_bytes()

    # The audit's own rule is the default of patients.csv and the report.
    body["patient_aggregation"] = "mean-score"
    mean_audit = client.post("/v1/audits", json=body).json()
    assert mean_audit["patient_aggregation"] == "mean-score"
    assert helpers.wait(client, mean_audit["id"])["status"] == "succeeded"
    default_rows = client.get(f"/v1/audits/{mean_audit['id']}/patients.csv").text
    assert {r["patient"] for r in csv.DictReader(io.StringIO(default_rows)) if r["used"] == "1"} == {
        key[raw[0]],
        key[raw[1]],
    }
    assert "from 2 of 6 patients" in client.get(f"/v1/audits/{mean_audit['id']}/report").text


def test_patients_csv_needs_dicom_patients(embedded_client, membership_set, helpers) -> None:
    client = embedded_client
    real, generated = helpers.upload_set(client, membership_set[0])
    audit = client.post(
        "/v1/audits",
        json={
            "real_dataset_id": real,
            "generated_dataset_id": generated,
            "config": {"method": "pixels", "image_size": 32},
        },
    ).json()
    assert helpers.wait(client, audit["id"])["status"] == "succeeded"
    response = client.get(f"/v1/audits/{audit['id']}/patients.csv")
    assert response.status_code == 409 and "patient information" in response.json()["detail"]
    bad = client.post(
        "/v1/audits",
        json={"real_dataset_id": real, "generated_dataset_id": generated, "patient_labels": {"X": 1}},
    )
    assert bad.status_code == 422 and "no patient information" in bad.json()["detail"]
