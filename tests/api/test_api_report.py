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
    assert "id=score-histogram" in page and "id=roc-curve" in page
    n_real = len(truth)
    assert len(images) >= 2 + min(12, n_real) * 2  # two plots, gallery: real + nearest generated
    metrics = client.get(f"/v1/audits/{audit['id']}/metrics").json()
    used = metrics["counts"]["used"]
    assert f"{used:,} of {n_real:,} real images" in page
    assert f"{metrics['threshold']:.4f}" in page
    assert client.get(report_url + "?aggregation=mean-score").status_code == 200
    assert client.get(report_url + "?aggregation=median").status_code == 422

    html_file = tmp_path / "report.html"
    html_file.write_text(page)
    rgb = screenshot(html_file, tmp_path / "report.png")
    assert rgb.shape[0] >= 1500 and rgb.shape[1] >= 1000
    assert non_white_fraction(rgb) > 0.05  # text, plots and thumbnails, not a blank page
    assert colour_pixels(rgb, RED) > 500 and colour_pixels(rgb, BLUE) > 500  # histogram bars and ROC curve

    client.delete(f"/v1/audits/{audit['id']}")


def test_report_of_an_unfinished_or_unknown_audit(embedded_client) -> None:
    import uuid

    response = embedded_client.get(f"/v1/audits/{uuid.uuid4()}/report")
    assert response.status_code == 404
    assert response.headers["content-type"].startswith("application/problem+json")
