"""The synthaudit command as a user runs it: real processes, real files."""
from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest

from synthetic_sets import make_membership_set

CLI = [sys.executable, "-m", "app.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def bench_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("bench") / "tiny"
    labels = make_membership_set(root, n_used=10, n_unused=10, n_fresh_generated=20, seed=3)
    return root, labels


def test_audit_writes_csv_and_evaluate_scores_it(bench_folder, tmp_path: Path) -> None:
    root, labels = bench_folder
    out = tmp_path / "results.csv"
    result = run_cli("audit", "--real", str(root / "real"), "--generated", str(root / "generated"),
                     "--out", str(out), "--method", "pixels", "--image-size", "32")
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["id", "used", "score", "nearest_generated", "similarity"]
    assert {r["id"] for r in rows} == set(labels)
    used = {r["id"] for r in rows if r["used"] == "1"}
    assert len(used) == 10
    evaluated = run_cli("evaluate", "--pred", str(out), "--labels", str(root / "labels.csv"))
    assert evaluated.returncode == 0, evaluated.stderr
    assert "auc" in evaluated.stdout and "f1" in evaluated.stdout


def test_audit_imageclef_format(bench_folder, tmp_path: Path) -> None:
    root, labels = bench_folder
    out = tmp_path / "run.txt"
    result = run_cli("audit", "--real", str(root / "real"), "--generated", str(root / "generated"),
                     "--out", str(out), "--method", "pixels", "--image-size", "32", "--format", "imageclef",
                     "--labels", str(root / "labels.csv"))
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == len(labels)
    assert all(line.count(",") == 1 and line.split(",")[1] in {"0", "1"} for line in lines)
    assert not lines[0].startswith("id,")
    assert "cross-validated" in result.stdout


def test_bench_prints_table(bench_folder) -> None:
    root, _ = bench_folder
    result = run_cli("bench", str(root), "--methods", "pixels", "--image-size", "32")
    assert result.returncode == 0, result.stderr
    assert "| tiny" in result.stdout and "pixels" in result.stdout and "cross-validation" in result.stdout


def test_missing_input_is_one_line_error(tmp_path: Path) -> None:
    result = run_cli("audit", "--real", str(tmp_path / "nope"), "--generated", str(tmp_path), "--out",
                     str(tmp_path / "r.csv"))
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr


def test_empty_set_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "gen").mkdir()
    result = run_cli("audit", "--real", str(tmp_path / "real"), "--generated", str(tmp_path / "gen"),
                     "--out", str(tmp_path / "r.csv"), "--method", "pixels")
    assert result.returncode == 2
    assert "no readable images" in result.stderr
    assert "Traceback" not in result.stderr
