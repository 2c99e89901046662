"""`synthaudit audit --report`: the HTML report next to the CSV, from the same work folder."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
from browser import non_white_fraction, screenshot
from synthetic_sets import make_membership_set


@pytest.mark.slow
def test_audit_writes_a_report(tmp_path: Path) -> None:
    root = tmp_path / "set"
    labels = make_membership_set(root, n_used=6, n_unused=6, n_fresh_generated=12, seed=5)
    report, metrics = tmp_path / "out" / "report.html", tmp_path / "metrics.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "synthaudit.app.cli",
            "audit",
            "--real",
            str(root / "real"),
            "--generated",
            str(root / "generated"),
            "--labels",
            str(root / "labels.csv"),
            "--method",
            "pixels",
            "--image-size",
            "32",
            "--out",
            str(tmp_path / "r.csv"),
            "--metrics",
            str(metrics),
            "--report",
            str(report),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert f"wrote {report}" in result.stdout
    page = report.read_text()
    # labels with used=0 calibrate: the not-used images are the reference, the used ones the candidates
    leak = json.loads(metrics.read_text())["leakage"]
    assert leak["n_reference"] == 6 and leak["n_candidates"] == 6
    lead = re.search(r"<span class=lead id=leakage-sentence>(.*?)</span>", page).group(1)
    found = "Evidence of" if leak["detected"] else "No evidence of"
    assert lead.startswith(found + " training-data leakage")
    bound = leak["used_count_lower_bound"]
    said = (
        f"at least {bound} were used (95 % confidence)"
        if bound
        else "no lower bound above zero can be given on how many were used"
    )
    assert (
        f"at a false discovery rate of 10 %, {leak['n_flagged']} of 6 candidate images are flagged; {said}."
        in lead
    )
    assert "at least 0 " not in page
    assert "id=candidate-vs-reference" in page and "id=p-value-histogram" in page and "id=roc-curve" in page
    assert page.count("data:image/png;base64,") >= 3 + 6 * 2  # plots, gallery: the 6 candidates + neighbours
    gallery = set(re.findall(r"<div class=row data-real-id='([^']*)'>", page))
    assert gallery == {k for k, v in labels.items() if v == 1}  # the reference images are not candidates
    assert "Metrics on the labelled images" in page
    assert non_white_fraction(screenshot(report, tmp_path / "shot.png")) > 0.05


def test_report_of_a_reference_set_audit_shows_only_the_real_images(tmp_path: Path) -> None:
    from synthaudit.app.cli import main

    root = tmp_path / "set"
    labels = make_membership_set(root, n_used=6, n_unused=16, n_fresh_generated=10, seed=8)
    reference = root / "reference"
    reference.mkdir()
    for image_id in sorted(k for k, v in labels.items() if v == 0)[:12]:
        (root / "real" / f"{image_id}.png").rename(reference / f"held_out_{image_id}.png")
        del labels[image_id]
    report = tmp_path / "report.html"
    argv = [
        "audit",
        "--real",
        str(root / "real"),
        "--generated",
        str(root / "generated"),
        "--reference",
        str(reference),
        "--method",
        "pixels",
        "--image-size",
        "32",
        "--out",
        str(tmp_path / "r.csv"),
        "--report",
        str(report),
    ]
    assert main(argv) == 0
    page = report.read_text()
    gallery = re.findall(r"<div class=row data-real-id='([^']*)'>", page)
    assert sorted(gallery) == sorted(labels)  # 10 real images, all shown; no reference-set image
    assert "held_out_" not in page
    assert "12 (12 from the reference set, 0 real images labelled not used)" in page


def test_report_of_dicom_studies_counts_patients(tmp_path: Path, capsys) -> None:
    from dicom_sets import LAYOUT, make_dicom_set

    from synthaudit.app.cli import main
    from synthaudit.models.groups import pseudonym

    data = make_dicom_set(tmp_path / "dicom")
    report = tmp_path / "report.html"
    assert (
        main(
            [
                "audit",
                "--real",
                str(data.root / "real"),
                "--generated",
                str(data.root / "generated"),
                "--method",
                "pixels",
                "--image-size",
                "32",
                "--decision",
                "fixed",
                "--threshold",
                "0.999",
                "--out",
                str(tmp_path / "r.csv"),
                "--report",
                str(report),
            ]
        )
        == 0
    )
    page = report.read_text()
    assert "<h2>Patients</h2>" in page and "6 patients; aggregation rule" in page
    # uncalibrated: the patients are ranked, the rule's count is no finding
    assert "3 of 6" not in page and "Uncalibrated: patients are ranked" in page
    assert page.count("<td>rule: used</td>") == 3
    assert pseudonym("patient", next(iter(LAYOUT))) in page and "PAT-000" not in page
