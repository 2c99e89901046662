"""models.results: the synthaudit and ImageCLEF CSV formats, and labels files."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from models.results import ResultRow, read_labels_csv, read_results_csv, write_results_csv

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
    rows = [ResultRow("a", 1, 0.9, "g1", 0.8, p_value=1.23456789e-7, q_value=0.0421, role="candidate"),
            ResultRow("b", 0, 0.1, "g2", 0.3, role="reference")]
    path = tmp_path / "r.csv"
    write_results_csv(rows, path)
    assert path.read_text().splitlines()[1:] == ["a,1,0.900000,g1,0.800000,1.23457e-07,0.0421,candidate",
                                                 "b,0,0.100000,g2,0.300000,,,reference"]
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
