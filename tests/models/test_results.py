"""synthaudit.models.results: the synthaudit and ImageCLEF CSV formats, and labels files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from synthaudit.models.results import ResultRow, read_labels_csv, read_results_csv, write_results_csv

ROWS = [
    ResultRow("img_001", 1, 0.91234567, "gen_17", 0.987654321),
    ResultRow("ct/scan_2", 0, 0.1, "gen_3", 0.5),
]


def test_synthaudit_format_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    write_results_csv(ROWS, path)
    lines = path.read_text().splitlines()
    assert lines[0] == "id,used,score,nearest_generated,similarity,p_value,q_value,role"
    assert lines[1] == "img_001,1,0.912346,gen_17,0.987654,,,candidate"
    back = read_results_csv(path)
    assert [r.id for r in back] == ["img_001", "ct/scan_2"]
    assert back[0].used == 1 and back[0].score == pytest.approx(0.912346)
    assert back[1].nearest_generated == "gen_3" and back[1].similarity == pytest.approx(0.5)
    assert [p.name for p in tmp_path.iterdir()] == ["results.csv"]  # no temp file left


def test_p_values_and_roles_round_trip_and_old_files_still_read(tmp_path: Path) -> None:
    rows = [
        ResultRow("a", 1, 0.9, "g1", 0.8, p_value=1.23456789e-7, q_value=0.0421, role="candidate"),
        ResultRow("b", 0, 0.1, "g2", 0.3, role="reference"),
    ]
    path = tmp_path / "r.csv"
    write_results_csv(rows, path)
    assert path.read_text().splitlines()[1:] == [
        "a,1,0.900000,g1,0.800000,1.23457e-07,0.0421,candidate",
        "b,0,0.100000,g2,0.300000,,,reference",
    ]
    back = read_results_csv(path)
    assert back[0].p_value == pytest.approx(1.23457e-07) and back[1].p_value is None
    assert [r.role for r in back] == ["candidate", "reference"]
    legacy = tmp_path / "old.csv"
    legacy.write_text("id,used,score,nearest_generated,similarity\nx,1,0.5,g,0.4\n")
    assert read_results_csv(legacy)[0] == ResultRow("x", 1, 0.5, "g", 0.4)
    with pytest.raises(ValueError, match="role"):
        write_results_csv([ResultRow("c", 0, 0.1, "g", 0.1, role="other")], tmp_path / "bad.csv")


def test_imageclef_format_has_no_header(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "run.csv"
    write_results_csv(ROWS, path, fmt="imageclef")
    assert path.read_text() == "img_001,1\nscan_2,0\n"
    back = read_results_csv(path)
    assert [(r.id, r.used) for r in back] == [("img_001", 1), ("scan_2", 0)]
    assert math.isnan(back[0].score) and math.isnan(back[0].similarity)


def test_imageclef_rejects_ids_that_collide_without_folders(tmp_path: Path) -> None:
    rows = [ResultRow("a/x", 1, 0.5, "g", 0.5), ResultRow("b/x", 0, 0.1, "g", 0.1)]
    with pytest.raises(ValueError, match="x"):
        write_results_csv(rows, tmp_path / "r.csv", fmt="imageclef")
    assert not (tmp_path / "r.csv").exists()


def test_unknown_format_and_bad_used(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="format"):
        write_results_csv(ROWS, tmp_path / "r.csv", fmt="xml")
    with pytest.raises(ValueError):
        write_results_csv([ResultRow("a", 2, 0.0, "g", 0.0)], tmp_path / "r.csv")


def test_write_replaces_an_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "results.csv"
    path.write_text("old content that is longer than the new one\n" * 10)
    write_results_csv(ROWS[:1], path, fmt="imageclef")
    assert path.read_text() == "img_001,1\n"


@pytest.mark.parametrize(
    "text",
    ["id,used\nimg_1.png,1\nimg_2,0\n", "id,label\nimg_1,1\nimg_2.jpg,0\n", "img_1.PNG,1\nimg_2,0\n\n"],
)
def test_read_labels_csv_variants(tmp_path: Path, text: str) -> None:
    path = tmp_path / "labels.csv"
    path.write_text(text)
    assert read_labels_csv(path) == {"img_1": 1, "img_2": 0}


def test_read_labels_keeps_non_image_dots(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("\ufeffid,used\n1.2.840.113,1\n")
    assert read_labels_csv(path) == {"1.2.840.113": 1}


def test_read_labels_csv_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("id,used\nimg_1,1\nimg_2,yes\n")
    with pytest.raises(ValueError, match="line 3"):
        read_labels_csv(path)
    path.write_text("img_1,1\nimg_1,0\n")
    with pytest.raises(ValueError, match="line 2.*duplicate"):
        read_labels_csv(path)


# --- CSV formula injection (issue 14 #10): one rule for every text cell, numbers untouched -----------

HOSTILE_IDS = [
    "=cmd|' /C calc'!A0",
    "@SUM(1+1)",
    "+3+4",
    "-2+3",
    "\t=1+1",
    "\r=1+1",
    "\uff1d1+1",  # full-width =
    "\uff0b1",
    "\uff0d1",
    "\uff20SUM(A1)",
    "'=already quoted",  # quotes before a trigger: one more quote, so the rule stays reversible
]


def test_formula_cells_get_a_quote_and_read_back(tmp_path: Path) -> None:
    rows = [ResultRow(i, 1, -0.5, "+gen", -0.25, p_value=0.5, q_value=0.5) for i in HOSTILE_IDS]
    rows.append(ResultRow("'plain", 0, 0.1, "gen", 0.1))
    path = tmp_path / "results.csv"
    write_results_csv(rows, path)
    import csv

    with open(path, newline="") as fh:
        cells = list(csv.reader(fh))[1:]
    for raw, row in zip(HOSTILE_IDS, cells[:-1], strict=True):
        assert row[0] == "'" + raw
        assert row[3] == "'+gen"
        assert row[2] == "-0.500000" and row[4] == "-0.250000"  # numbers keep their sign, no quote
    assert cells[-1][0] == "'plain"  # a quote not followed by a trigger is part of the id
    back = read_results_csv(path)
    assert [r.id for r in back] == HOSTILE_IDS + ["'plain"]  # exactly the ids written
    assert {r.nearest_generated for r in back} == {"+gen", "gen"}

    clef = tmp_path / "clef.csv"
    write_results_csv(
        [ResultRow("ct/=1+1", 1, 0.5, "g", 0.5), ResultRow("@x", 0, 0.1, "g", 0.1)], clef, fmt="imageclef"
    )
    assert clef.read_text() == "'=1+1,1\n'@x,0\n"
    assert [r.id for r in read_results_csv(clef)] == ["=1+1", "@x"]


def test_labels_match_quoted_and_raw_ids(tmp_path: Path) -> None:
    from synthaudit.models.results import write_labels_csv

    raw = tmp_path / "raw.csv"
    raw.write_text("id,used\n=cmd|' /C calc'!A0.png,1\n-2+3,0\n")
    assert read_labels_csv(raw) == {"=cmd|' /C calc'!A0": 1, "-2+3": 0}
    copied = tmp_path / "copied.csv"
    copied.write_text("id,used\n'=cmd|' /C calc'!A0,1\n'-2+3,0\n")  # pasted from results.csv
    assert read_labels_csv(copied) == read_labels_csv(raw)
    written = tmp_path / "written.csv"
    write_labels_csv([("@x", 1), ("y", 0)], written)
    assert written.read_text() == "id,used\n'@x,1\ny,0\n"
    assert read_labels_csv(written) == {"@x": 1, "y": 0}


def test_patients_csv_text_cells_are_guarded() -> None:
    from synthaudit.models.groups import PatientResult, patients_csv_lines

    lines = patients_csv_lines([PatientResult("=HYPERLINK(1)", 2, 1, 1, -0.5, -0.1, -0.3, 1, 1)])
    assert lines[1][0] == "'=HYPERLINK(1)"
    assert lines[1][4:7] == ["-0.500000", "-0.100000", "-0.300000"]


def test_csv_writer_quotes_like_the_csv_module_and_quotes_bare_cr(tmp_path: Path) -> None:
    import csv
    import io
    import random

    from synthaudit.models.csv_safety import write_csv_atomic

    rng = random.Random(14)
    alphabet = "ab ,\"\n\t;'x\u00e9"
    rows = [
        ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 6))) for _ in range(3)]
        for _ in range(500)
    ]
    expected = io.StringIO()
    csv.writer(expected, lineterminator="\n").writerows(rows)
    path = write_csv_atomic(rows, tmp_path / "x.csv")
    assert path.read_text(encoding="utf-8") == expected.getvalue()
    write_csv_atomic([["a\r=1+1", "1"]], path)
    assert path.read_bytes() == b'"a\r=1+1",1\n'  # one row: a spreadsheet starts no new row at the CR
