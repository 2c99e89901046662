"""CSV formula injection (issue 14 #10): image ids come from file names, and results.csv, the ImageCLEF
format and patients.csv must never hand a spreadsheet a text cell it runs as a formula. Files named
`=cmd|' /C calc'!A0.png`, `@SUM(1+1).png`, `+3+4.png`, `-2+3.png` (and full-width forms) are uploaded over
HTTP to the embedded service and audited; the same folders go through the CLI, and `synthaudit
evaluate` with a labels file of the raw names still matches every id."""

from __future__ import annotations

import contextlib
import csv
import io
import re
from pathlib import Path

import numpy as np
import pytest
from dicom_sets import dicom_file
from PIL import Image
from synthetic_sets import near_copy, random_image

from synthaudit.models.csv_safety import FORMULA_TRIGGERS

HOSTILE = ["=cmd|' /C calc'!A0", "@SUM(1+1)", "+3+4", "-2+3", "\uff1d1+1", "\uff20SUM(A1)"]
HOSTILE_GENERATED = ["+gen_1", "=gen_2", "-gen_3"]
HOSTILE_DICOM = ["=HYPERLINK(1)", "@dicom"]


@pytest.fixture(scope="module")
def hostile_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """real/: 6 hostile-named PNGs, 4 plain ones and 2 hostile-named DICOMs whose PatientID is hostile too;
    generated/: near-copies of the first real images (3 of them hostile-named) and fresh images."""
    root = tmp_path_factory.mktemp("csv-injection")
    rng = np.random.default_rng(14)
    real, generated = root / "real", root / "generated"
    real.mkdir()
    generated.mkdir()
    images = [random_image(rng, 32) for _ in range(10)]
    for name, img in zip(HOSTILE + [f"plain_{i}" for i in range(4)], images, strict=True):
        (real / f"{name}.png").parent.mkdir(parents=True, exist_ok=True)  # `=cmd|' /C…`: a sub-folder
        Image.fromarray(img).save(real / f"{name}.png")
    for i, name in enumerate(HOSTILE_DICOM):
        data = dicom_file(random_image(rng, 32), f'=HYPERLINK("http://x/{i}")', f"1.2.3.{i}", f"1.2.3.{i}.1")
        (real / f"{name}.dcm").write_bytes(data)
    for name, img in zip(HOSTILE_GENERATED, images, strict=False):
        Image.fromarray(near_copy(rng, img)).save(generated / f"{name}.png")
    for i in range(9):
        Image.fromarray(random_image(rng, 32)).save(generated / f"fresh_{i}.png")
    return root


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def _upload(client, role: str, folder: Path):  # type: ignore[no-untyped-def]
    """POST /v1/datasets with the folder as one zip, members named by their relative paths (a multipart
    file name loses its folders, a zip member keeps them: `=cmd|' /C calc'!A0.png` stays one id)."""
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path in _files(folder):
            archive.write(path, path.relative_to(folder).as_posix())
    files = [("files", (f"{role}.zip", buffer.getvalue(), "application/zip"))]
    return client.post("/v1/datasets", data={"role": role}, files=files)


def _rows(data: bytes) -> list[list[str]]:
    return list(csv.reader(io.StringIO(data.decode("utf-8"))))


def _assert_no_formula_cell(rows: list[list[str]], text_columns: tuple[int, ...]) -> None:
    for row in rows:
        for col in text_columns:
            assert not row[col].startswith(FORMULA_TRIGGERS), row


def _check_results(results: bytes, imageclef: bytes) -> None:
    rows = _rows(results)
    assert rows[0][:4] == ["id", "used", "score", "nearest_generated"]
    ids = {r[0] for r in rows[1:]}
    for name in HOSTILE + HOSTILE_DICOM:
        assert "'" + name in ids, (name, sorted(ids))
    assert {f"plain_{i}" for i in range(4)} <= ids  # other ids unchanged
    _assert_no_formula_cell(rows[1:], (0, 3, 7))
    nearest = {r[3] for r in rows[1:]}
    assert nearest & {"'" + g for g in HOSTILE_GENERATED}, nearest  # the near-copies are found
    for row in rows[1:]:
        float(row[2]), float(row[4])  # numeric cells stay numbers (a negative score gets no quote)
    clef = _rows(imageclef)
    from synthaudit.models.csv_safety import text_cell

    stems = {text_cell(name.rsplit("/", 1)[-1]) for name in HOSTILE + HOSTILE_DICOM}  # no folders there
    assert stems <= {r[0] for r in clef}
    assert "'@SUM(1+1)" in stems
    _assert_no_formula_cell(clef, (0,))


def test_hostile_file_names_are_quoted_in_every_csv_over_http(
    embedded_client, helpers, hostile_set: Path
) -> None:
    client = embedded_client
    real = _upload(client, "real", hostile_set / "real")
    assert real.status_code == 201, real.text
    assert real.json()["image_count"] == 12, real.json()
    generated = _upload(client, "generated", hostile_set / "generated")
    assert generated.status_code == 201, generated.text
    images = client.get(f"/v1/datasets/{real.json()['id']}/images", params={"limit": 100}).json()
    assert set(HOSTILE) <= {i["id"] for i in images["items"]}, images  # the JSON keeps the raw ids
    labels = {HOSTILE[0]: 1, HOSTILE[3]: 0}  # labels by the raw ids
    body = {
        "real_dataset_id": real.json()["id"],
        "generated_dataset_id": generated.json()["id"],
        "config": {"method": "pixels", "seed": 0},
        "labels": labels,
    }
    created = client.post("/v1/audits", json=body)
    assert created.status_code == 202, created.text
    audit = helpers.wait(client, created.json()["id"])
    assert audit["status"] == "succeeded", audit
    results = client.get(f"/v1/audits/{audit['id']}/results.csv")
    imageclef = client.get(f"/v1/audits/{audit['id']}/results.csv", params={"format": "imageclef"})
    assert results.status_code == imageclef.status_code == 200
    _check_results(results.content, imageclef.content)
    patients = client.get(f"/v1/audits/{audit['id']}/patients.csv")
    assert patients.status_code == 200, patients.text
    rows = _rows(patients.content)
    assert len(rows) == 1 + len(HOSTILE_DICOM)
    assert all(re.fullmatch(r"p_[0-9a-f]{16}", r[0]) for r in rows[1:])  # keys, never the PatientID
    _assert_no_formula_cell(rows[1:], (0, 11))


def test_hostile_file_names_are_quoted_by_the_cli_and_evaluate_matches_raw_labels(
    hostile_set: Path, tmp_path: Path
) -> None:
    from synthaudit.app.cli import main

    out, clef = tmp_path / "results.csv", tmp_path / "clef.csv"
    common = [
        "--real",
        str(hostile_set / "real"),
        "--generated",
        str(hostile_set / "generated"),
        "--method",
        "pixels",
        "--seed",
        "0",
    ]
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["audit", *common, "--out", str(out)]) == 0
        assert main(["audit", *common, "--out", str(clef), "--format", "imageclef"]) == 0
    _check_results(out.read_bytes(), clef.read_bytes())
    labels = tmp_path / "labels.csv"  # written by a user: the raw file names
    with open(labels, "w", newline="") as fh:
        csv.writer(fh).writerows([["id", "used"], *([f"{n}.png", i % 2] for i, n in enumerate(HOSTILE))])
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["evaluate", "--pred", str(out), "--labels", str(labels)]) == 0
    assert f"{len(HOSTILE)} labelled images scored" in printed.getvalue()
    assert "without prediction" not in printed.getvalue()
