"""DICOM studies: images grouped by pseudonymous patient/series keys, labels per patient,
GET /v1/audits/{id}/patients.csv (rules any | mean-score, patient-level p-values against reference
patients) and the patients in the report."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import pytest
from dicom_sets import LAYOUT, dicom_file, make_dicom_set


@pytest.fixture(scope="module")
def dicom_set(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    return make_dicom_set(tmp_path_factory.mktemp("dicom"))


@pytest.fixture(scope="module")
def reference_dicoms(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A reference set of 20 patients known not to be used (3 images each, one study, one series). Its
    image ids are the real set's (img_01…) on purpose: ids of different datasets may coincide."""
    import numpy as np
    from pydicom.uid import generate_uid
    from synthetic_sets import random_image

    root = tmp_path_factory.mktemp("reference-dicom")
    rng = np.random.default_rng(11)
    for p in range(20):
        study, series = generate_uid(), generate_uid()
        for j in range(3):
            pixels = random_image(rng, 32)
            data = dicom_file(pixels, f"REF-{p:04d}-SECRET", study, series)
            (root / f"img_{3 * p + j + 1:02d}.dcm").write_bytes(data)
    return root


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
    key = {raw: helpers.pseudonym(raw) for raw in LAYOUT}  # keyed as this server keys tenant default
    raw = list(LAYOUT)
    labels = {raw[0]: 1, key[raw[1]]: 1, raw[3]: 0, raw[4]: 0}  # raw PatientIDs or their pseudonyms
    body = {
        "real_dataset_id": real,
        "generated_dataset_id": generated,
        "patient_labels": labels,
        "config": {"method": "pixels", "image_size": 32, "decision": "calibrated"},  # F1 on the labels
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
    # Calibrated (patients labelled 0 are the reference): p-values for the others; under the F1 rule the
    # decisions stay the images'.
    assert {p for p, r in by_any.items() if r["role"] == "reference"} == {key[raw[3]], key[raw[4]]}
    assert all((r["p_value"] != "") == (r["role"] == "candidate") for r in by_any.values())
    p1, p3, p5 = by_any[key[raw[0]]], by_any[key[raw[2]]], by_any[key[raw[4]]]
    assert (p1["images"], p1["images_used"], p1["studies"], p1["series"]) == ("3", "3", "1", "2")
    assert (p3["images_used"], p3["series"]) == ("1", "3") and p5["images_used"] == "0"
    by_mean = patients("mean-score")
    assert {p for p, r in by_mean.items() if r["used"] == "1"} == {key[raw[0]], key[raw[1]]}
    assert float(by_mean[key[raw[2]]]["mean_score"]) < threshold <= float(by_mean[key[raw[2]]]["max_score"])

    report = client.get(f"/v1/audits/{audit['id']}/report").text
    assert "<h2>Patients</h2>" in report and key[raw[0]] in report and "<code>any</code>" in report
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
    assert "<code>mean-score</code>" in client.get(f"/v1/audits/{mean_audit['id']}/report").text


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


def test_patients_are_tested_against_the_reference_sets_patients(
    embedded_client, dicom_set, reference_dicoms, helpers
) -> None:
    """A reference dataset of DICOM patients: each real patient's score gets a conformal p-value against
    the reference patients' scores, and BH at the audit's FDR decides; reference patients are listed with
    role `reference`; results.csv still has only the real images."""
    client = embedded_client
    real, generated = upload(client, helpers, dicom_set.root)
    reference = helpers.upload(client, "reference", sorted(reference_dicoms.glob("*.dcm")))
    assert reference.status_code == 201, reference.text
    body = {
        "real_dataset_id": real,
        "generated_dataset_id": generated,
        "reference_dataset_id": reference.json()["id"],
        "config": {"method": "pixels", "image_size": 32, "fdr": 0.2},
    }
    audit = client.post("/v1/audits", json=body).json()
    assert helpers.wait(client, audit["id"])["status"] == "succeeded"
    images = list(csv.DictReader(io.StringIO(client.get(f"/v1/audits/{audit['id']}/results.csv").text)))
    assert len(images) == 18 and all(r["role"] == "candidate" for r in images)

    response = client.get(f"/v1/audits/{audit['id']}/patients.csv")
    assert response.status_code == 200, response.text
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {"p_value", "q_value", "role"} <= set(rows[0])
    key = {raw: helpers.pseudonym(raw) for raw in LAYOUT}
    reference_keys = {helpers.pseudonym(f"REF-{p:04d}-SECRET") for p in range(20)}
    by_patient = {r["patient"]: r for r in rows}
    assert set(by_patient) == set(key.values()) | reference_keys
    assert {p for p, r in by_patient.items() if r["role"] == "reference"} == reference_keys
    for patient in reference_keys:
        assert by_patient[patient]["p_value"] == "" and by_patient[patient]["used"] == "0"
    copied = [key[raw] for raw in list(LAYOUT)[:3]]  # patients with images in the generated set
    for patient in copied:
        row = by_patient[patient]
        assert row["used"] == "1" and float(row["p_value"]) == pytest.approx(1 / 21, rel=1e-4)
        assert float(row["q_value"]) >= float(row["p_value"])
    assert all(by_patient[p]["p_value"] != "" for p in key.values())
