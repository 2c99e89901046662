"""GET /v1/audits/{id}/report: a self-contained HTML report that renders in headless Chromium."""

from __future__ import annotations

import re
from pathlib import Path

from browser import colour_pixels, non_white_fraction, screenshot

RED, BLUE = (0xC0, 0x39, 0x2B), (0x2F, 0x6F, 0xB3)


def test_report_of_an_audit_renders_with_its_plots(
    embedded_client, membership_set, helpers, tmp_path: Path
) -> None:
    client, (root, truth) = embedded_client, membership_set
    real, generated = helpers.upload_set(client, root)
    labels = dict(sorted(truth.items())[:14])  # some of each class
    assert set(labels.values()) == {0, 1}
    audit = client.post(
        "/v1/audits",
        json={
            "real_dataset_id": real,
            "generated_dataset_id": generated,
            "labels": labels,
            "config": {"method": "pixels", "image_size": 32},
        },
    ).json()
    report_url = f"/v1/audits/{audit['id']}/report"
    early = client.get(report_url)
    assert early.status_code in (200, 409)  # 409 until it has succeeded
    done = helpers.wait(client, audit["id"])
    assert done["status"] == "succeeded"
    trail = done["trail"]  # the audit trail: what went in, with which code, how long it took
    assert trail["inputs"]["real"] == {
        "dataset_id": real,
        "images": 20,
        "sha256": trail["inputs"]["real"]["sha256"],
    }
    assert len(trail["inputs"]["generated"]["sha256"]) == 64 and trail["inputs"]["labels"]["images"] == 14
    assert trail["code"]["version"] and trail["seed"] == 0 and len(trail["config_sha256"]) == 64
    assert set(trail["timings"]) >= {"decode", "decide"} and trail["finished_at"]

    response = client.get(report_url)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/html")
    page = response.text
    # Self-contained: every image inline, no scripts, no external references.
    assert "<script" not in page and "http://" not in page and "https://" not in page
    images = re.findall(r"<img [^>]*src='data:image/png;base64,[A-Za-z0-9+/=]+'", page)
    assert "id=candidate-vs-reference" in page and "id=p-value-histogram" in page and "id=roc-curve" in page
    # the labels with used=0 are the reference: the verdict is the leakage test, with the metrics' numbers
    metrics = client.get(f"/v1/audits/{audit['id']}/metrics").json()
    leak = metrics["leakage"]
    n_candidates = len(truth) - sum(1 for v in labels.values() if v == 0)
    assert metrics["calibrated"] and leak["n_candidates"] == n_candidates
    assert len(images) >= 3 + min(12, n_candidates) * 2  # plots, gallery: candidates + nearest generated
    lead = re.search(r"<span class=lead id=leakage-sentence>(.*?)</span>", page).group(1)
    assert lead.startswith("Evidence of training-data leakage: p = ")  # 8 exact copies among the candidates
    bound = leak["used_count_lower_bound"]
    said = (
        f"at least {bound:,} were used (95 % confidence)."
        if bound
        else "no lower bound above zero can be given on how many were used."
    )
    assert (
        f"at a false discovery rate of 10 %, {leak['n_flagged']:,} of {n_candidates:,} candidate images are "
        f"flagged; {said}"
    ) in lead
    assert "at least 0 " not in page
    assert "class='verdict risk'" in page
    assert client.get(report_url + "?aggregation=mean-score").status_code == 200
    assert client.get(report_url + "?aggregation=median").status_code == 422

    html_file = tmp_path / "report.html"
    html_file.write_text(page)
    rgb = screenshot(html_file, tmp_path / "report.png")
    assert rgb.shape[0] >= 1500 and rgb.shape[1] >= 1000
    assert non_white_fraction(rgb) > 0.05  # text, plots and thumbnails, not a blank page
    assert colour_pixels(rgb, RED) > 500 and colour_pixels(rgb, BLUE) > 500  # candidates, reference, ROC

    client.delete(f"/v1/audits/{audit['id']}")


def test_report_of_an_unfinished_or_unknown_audit(embedded_client) -> None:
    import uuid

    response = embedded_client.get(f"/v1/audits/{uuid.uuid4()}/report")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")


def test_report_of_a_reference_dataset_audit(embedded_client, membership_set, reference_set, helpers) -> None:
    client, (root, truth) = embedded_client, membership_set
    real, generated = helpers.upload_set(client, root)
    uploaded = helpers.upload(client, "reference", sorted(reference_set.glob("*.png")))
    assert uploaded.status_code == 201, uploaded.text
    body = {
        "real_dataset_id": real,
        "generated_dataset_id": generated,
        "reference_dataset_id": uploaded.json()["id"],
        "config": {"method": "pixels", "image_size": 32},
    }
    audit = client.post("/v1/audits", json=body).json()
    assert helpers.wait(client, audit["id"])["status"] == "succeeded"
    page = client.get(f"/v1/audits/{audit['id']}/report").text
    leak = client.get(f"/v1/audits/{audit['id']}/metrics").json()["leakage"]
    assert leak["n_reference"] == 40 and leak["n_candidates"] == len(truth)
    lead = re.search(r"<span class=lead id=leakage-sentence>(.*?)</span>", page).group(1)
    bound = leak["used_count_lower_bound"]
    said = f"at least {bound:,} were used" if bound else "no lower bound above zero can be given"
    assert f"{leak['n_flagged']:,} of {len(truth):,} candidate images are flagged; {said}" in lead
    assert "40 (40 from the reference set, 0 real images labelled not used)" in page
    gallery = re.findall(r"<div class=row data-real-id='([^']*)'>", page)
    assert len(gallery) == 12 and set(gallery) <= set(truth)  # real images only
    assert "ref00" not in page  # no reference-set image is shown or named
    client.delete(f"/v1/audits/{audit['id']}")


def test_report_of_an_uncalibrated_audit_has_no_count_and_no_risk_frame(
    embedded_client, membership_set, helpers
) -> None:
    client, (root, truth) = embedded_client, membership_set
    real, generated = helpers.upload_set(client, root)
    body = {
        "real_dataset_id": real,
        "generated_dataset_id": generated,
        "config": {"method": "pixels", "image_size": 32},
    }
    audit = client.post("/v1/audits", json=body).json()
    assert helpers.wait(client, audit["id"])["status"] == "succeeded"
    page = client.get(f"/v1/audits/{audit['id']}/report").text
    used = client.get(f"/v1/audits/{audit['id']}/metrics").json()["counts"]["used"]
    assert used == 10  # the prior rule marks half, whatever the evidence
    assert f"{used} of {len(truth)}" not in page and "verdict risk" not in page
    assert "the ranking is all this audit can give" in page and "--reference DIR" in page
    client.delete(f"/v1/audits/{audit['id']}")


def test_report_of_dicom_patients_against_a_reference_dataset(
    embedded_client, helpers, tmp_path: Path
) -> None:
    """The reference dataset's patients are the reference of the patient p-values (its image ids repeat
    the real set's on purpose: ids of different datasets may coincide)."""
    import numpy as np
    from dicom_sets import LAYOUT, dicom_file, make_dicom_set
    from synthetic_sets import random_image

    data = make_dicom_set(tmp_path / "dicom")
    reference = tmp_path / "reference"
    reference.mkdir()
    rng = np.random.default_rng(11)
    for p in range(24):
        for j in range(3):
            pixels = random_image(rng, 32)
            name = f"img_{3 * p + j + 1:02d}.dcm"
            (reference / name).write_bytes(
                dicom_file(pixels, f"REF-{p:04d}-SECRET", f"1.2.{p}", f"1.2.{p}.1")
            )
    ids = []
    for role, folder, pattern in (
        ("real", data.root / "real", "*.dcm"),
        ("generated", data.root / "generated", "*.png"),
        ("reference", reference, "*.dcm"),
    ):
        response = helpers.upload(embedded_client, role, sorted(folder.glob(pattern)))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    body = {
        "real_dataset_id": ids[0],
        "generated_dataset_id": ids[1],
        "reference_dataset_id": ids[2],
        "config": {"method": "pixels", "image_size": 32},
    }
    audit = embedded_client.post("/v1/audits", json=body).json()
    assert helpers.wait(embedded_client, audit["id"])["status"] == "succeeded"
    page = embedded_client.get(f"/v1/audits/{audit['id']}/report").text
    patients_csv = embedded_client.get(f"/v1/audits/{audit['id']}/patients.csv").text
    rows = [line.split(",") for line in patients_csv.splitlines()[1:]]
    candidates = [r for r in rows if r[-1] == "candidate"]
    flagged = sum(1 for r in candidates if r[3] == "1")
    assert len(candidates) == 6 and sum(1 for r in rows if r[-1] == "reference") == 24
    assert f"<b>{flagged} of 6 candidate patients are flagged</b>" in page  # as patients.csv says
    assert "24 reference patients" in page
    assert helpers.pseudonym(next(iter(LAYOUT))) in page and "SECRET" not in page
    gallery = re.findall(r"<div class=row data-real-id='([^']*)'>", page)
    assert len(gallery) == 12 and set(gallery) <= set(data.patient_of)  # the 18 real images' ids
    embedded_client.delete(f"/v1/audits/{audit['id']}")
