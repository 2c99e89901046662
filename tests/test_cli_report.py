"""`synthaudit audit --report`: the HTML report next to the CSV, from the same work folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from browser import non_white_fraction, screenshot
from synthetic_sets import make_membership_set


def test_audit_writes_a_report(tmp_path: Path) -> None:
    root = tmp_path / "set"
    make_membership_set(root, n_used=6, n_unused=6, n_fresh_generated=12, seed=5)
    report = tmp_path / "out" / "report.html"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "app.cli",
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
    assert "id=score-histogram" in page and "id=roc-curve" in page
    assert page.count("data:image/png;base64,") >= 2 + 12 * 2
    assert "Metrics on the labelled images" in page
    assert non_white_fraction(screenshot(report, tmp_path / "shot.png")) > 0.05


def test_report_of_dicom_studies_counts_patients(tmp_path: Path, capsys) -> None:
    from dicom_sets import LAYOUT, make_dicom_set

    from app.cli import main
    from models.groups import pseudonym

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
    assert "from 3 of 6 patients" in page and "<h2>Patients</h2>" in page
    assert pseudonym("patient", next(iter(LAYOUT))) in page and "PAT-000" not in page
