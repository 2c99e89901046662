"""The synthaudit command as a user runs it: real processes, real files."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from synthetic_sets import make_membership_set

CLI = [sys.executable, "-m", "synthaudit.app.cli"]


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def bench_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, int]]:
    root = tmp_path_factory.mktemp("bench") / "tiny"
    labels = make_membership_set(root, n_used=10, n_unused=10, n_fresh_generated=20, seed=3)
    return root, labels


@pytest.mark.slow
def test_audit_writes_csv_and_evaluate_scores_it(bench_folder, tmp_path: Path) -> None:
    root, labels = bench_folder
    out = tmp_path / "results.csv"
    result = run_cli(
        "audit",
        "--real",
        str(root / "real"),
        "--generated",
        str(root / "generated"),
        "--out",
        str(out),
        "--method",
        "pixels",
        "--image-size",
        "32",
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == [
        "id",
        "used",
        "score",
        "nearest_generated",
        "similarity",
        "p_value",
        "q_value",
        "role",
    ]
    assert all(r["p_value"] == "" and r["q_value"] == "" for r in rows)  # no reference: uncalibrated
    assert "uncalibrated" in result.stdout
    assert {r["id"] for r in rows} == set(labels)
    used = {r["id"] for r in rows if r["used"] == "1"}
    assert len(used) == 10
    evaluated = run_cli("evaluate", "--pred", str(out), "--labels", str(root / "labels.csv"))
    assert evaluated.returncode == 0, evaluated.stderr
    assert "auc" in evaluated.stdout and "f1" in evaluated.stdout


@pytest.mark.slow
def test_audit_imageclef_format(bench_folder, tmp_path: Path) -> None:
    root, labels = bench_folder
    out = tmp_path / "run.txt"
    result = run_cli(
        "audit",
        "--real",
        str(root / "real"),
        "--generated",
        str(root / "generated"),
        "--out",
        str(out),
        "--method",
        "pixels",
        "--image-size",
        "32",
        "--format",
        "imageclef",
        "--labels",
        str(root / "labels.csv"),
    )
    assert result.returncode == 0, result.stderr
    lines = out.read_text().splitlines()
    assert len(lines) == len(labels)
    assert all(line.count(",") == 1 and line.split(",")[1] in {"0", "1"} for line in lines)
    assert not lines[0].startswith("id,")
    assert "cross-validated" in result.stdout


@pytest.mark.slow
def test_audit_with_a_reference_writes_p_values_and_the_metrics_json(bench_folder, tmp_path: Path) -> None:
    import json
    import shutil

    root, labels = bench_folder
    reference = tmp_path / "hold-out"
    reference.mkdir()
    held_out = sorted(k for k, v in labels.items() if v == 0)[:6]
    real = tmp_path / "real"
    shutil.copytree(root / "real", real)
    for image_id in held_out:
        (real / f"{image_id}.png").rename(reference / f"{image_id}.png")
    out, metrics = tmp_path / "results.csv", tmp_path / "metrics.json"
    result = run_cli(
        "audit",
        "--real",
        str(real),
        "--generated",
        str(root / "generated"),
        "--out",
        str(out),
        "--reference",
        str(reference),
        "--metrics",
        str(metrics),
        "--method",
        "pixels",
        "--image-size",
        "32",
        "--fdr",
        "0.2",
    )
    assert result.returncode == 0, result.stderr
    rows = list(csv.DictReader(out.open()))
    assert {r["id"] for r in rows} == set(labels) - set(held_out)
    assert all(r["role"] == "candidate" and 0 < float(r["p_value"]) <= float(r["q_value"]) <= 1 for r in rows)
    document = json.loads(metrics.read_text())
    assert document["audit_id"] is None and document["calibrated"] is True and document["fdr"] == 0.2
    assert document["decision_rule"] == "fdr"
    assert document["counts"]["reference"] == 6 and document["counts"]["candidates"] == 14
    leak = document["leakage"]
    assert set(leak) >= {
        "p_value",
        "detected",
        "level",
        "test",
        "n_candidates",
        "n_reference",
        "used_count_lower_bound",
        "used_share_estimate",
        "used_share_ci",
    }
    assert leak["n_flagged"] == sum(r["used"] == "1" for r in rows)
    assert "p = " in result.stdout
    bound = "at least" if leak["used_count_lower_bound"] else "no lower bound above zero can be given"
    assert bound in result.stdout
    assert document["reference_check"] is not None and leak["verdict"] in {"detected", "not_detected"}


def test_fdr_rule_without_reference_is_one_line_error(bench_folder, tmp_path: Path) -> None:
    root, _ = bench_folder
    result = run_cli(
        "audit",
        "--real",
        str(root / "real"),
        "--generated",
        str(root / "generated"),
        "--out",
        str(tmp_path / "r.csv"),
        "--method",
        "pixels",
        "--image-size",
        "32",
        "--decision",
        "fdr",
    )
    assert result.returncode == 2
    assert (
        result.stderr.strip().count("\n") == 0 and "known not to be used" in result.stderr
    )  # before any work


@pytest.mark.slow
def test_bench_prints_table(bench_folder) -> None:
    root, _ = bench_folder
    result = run_cli("bench", str(root), "--methods", "pixels", "--image-size", "32")
    assert result.returncode == 0, result.stderr
    assert "| tiny" in result.stdout and "pixels" in result.stdout and "cross-validation" in result.stdout


def test_missing_input_is_one_line_error(tmp_path: Path) -> None:
    result = run_cli(
        "audit",
        "--real",
        str(tmp_path / "nope"),
        "--generated",
        str(tmp_path),
        "--out",
        str(tmp_path / "r.csv"),
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "does not exist" in result.stderr


def test_empty_set_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "gen").mkdir()
    result = run_cli(
        "audit",
        "--real",
        str(tmp_path / "real"),
        "--generated",
        str(tmp_path / "gen"),
        "--out",
        str(tmp_path / "r.csv"),
        "--method",
        "pixels",
    )
    assert result.returncode == 2
    assert "no readable images" in result.stderr
    assert "Traceback" not in result.stderr


def test_alignment_is_a_config_argument() -> None:
    import argparse

    from synthaudit.app.cli import _add_config_arguments, _config_from_args

    parser = argparse.ArgumentParser()
    _add_config_arguments(parser)
    assert _config_from_args(parser.parse_args([])).alignment == "auto"
    assert _config_from_args(parser.parse_args(["--alignment", "off"])).alignment == "off"
    with pytest.raises(SystemExit):
        parser.parse_args(["--alignment", "sideways"])


@pytest.mark.slow
def test_output_fit_for_logs_on_a_pipe(bench_folder, tmp_path: Path) -> None:
    """Redirected, the progress is one plain line per stage (no cursor codes), and the summary and the
    verdict come before the "wrote ..." lines, the report's included."""
    root, _ = bench_folder
    result = run_cli(
        "audit", "--real", str(root / "real"), "--generated", str(root / "generated"),
        "--out", str(tmp_path / "r.csv"), "--report", str(tmp_path / "r.html"),
        "--method", "pixels", "--image-size", "32",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "\x1b[" not in result.stderr and "\r" not in result.stderr
    stages = [line.split(":")[0] for line in result.stderr.splitlines() if ": done in " in line]
    assert stages[0] == "decode" and stages[-1] == "decide" and len(set(stages)) == len(stages) >= 3
    lines = result.stdout.splitlines()
    wrote = [i for i, line in enumerate(lines) if line.startswith("wrote ")]
    assert [lines[i] for i in wrote] == [f"wrote {tmp_path / 'r.csv'}", f"wrote {tmp_path / 'r.html'}"]
    assert lines[0].startswith("20 real images") and wrote[0] > 1  # the summary and verdict first


def test_the_stage_bars_draw_on_a_terminal_only() -> None:
    import io

    from synthaudit.models.progress import stage_bars

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for stream, bar in ((Terminal(), True), (io.StringIO(), False)):
        update, close = stage_bars(stream)
        update("decode", 0.5)
        update("embed", 1.0)
        close()
        text = stream.getvalue()
        assert ("%" in text and "\r" in text) is bar
        assert ("decode: done in" in text and "embed: done in" in text) is not bar


def test_files_that_are_not_images_are_named(bench_folder, tmp_path: Path) -> None:
    """A set of only non-images says what it saw; a text file among images is named as skipped."""
    texts = tmp_path / "texts"
    texts.mkdir()
    for name in ("a.txt", "b.txt", "notes.md"):
        (texts / name).write_text("not an image")
    root, _ = bench_folder
    empty = run_cli(
        "audit",
        "--real",
        str(texts),
        "--generated",
        str(root / "generated"),
        "--out",
        str(tmp_path / "x.csv"),
    )
    assert empty.returncode == 2 and len(empty.stderr.strip().splitlines()) == 1
    assert "no readable images in texts: 3 file(s) are not images (a.txt, b.txt, notes.md;" in empty.stderr
    mixed = tmp_path / "mixed"
    shutil.copytree(root / "real", mixed)
    (mixed / "notes.txt").write_text("a note")
    result = run_cli(
        "audit", "--real", str(mixed), "--generated", str(root / "generated"), "--out", str(tmp_path / "r.csv"),
        "--method", "pixels", "--image-size", "32",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "skipped real file notes.txt: not an image file" in result.stderr


def test_images_of_other_sizes_and_shapes_are_reported_once(bench_folder, tmp_path: Path) -> None:
    from PIL import Image

    root, _ = bench_folder
    odd = tmp_path / "odd"
    shutil.copytree(root / "real", odd)
    Image.new("L", (17, 40), 128).save(odd / "tall.png")
    Image.new("L", (50, 20), 64).save(odd / "wide.png")
    result = run_cli(
        "audit", "--real", str(odd), "--generated", str(root / "generated"), "--out", str(tmp_path / "r.csv"),
        "--method", "pixels", "--image-size", "16",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    notes = [line for line in result.stderr.splitlines() if line.startswith("note: real:")]
    assert len(notes) == 1, result.stderr
    assert "22 of 22 images were resized to 16x16" in notes[0]
    assert "2 are not square and were stretched" in notes[0] and "17x40" in notes[0]


def test_resize_note_is_silent_when_nothing_was_resized() -> None:
    from synthaudit.models.io import resize_note

    assert resize_note([(32, 32)] * 3, 32) is None
    assert (
        resize_note([(32, 32), (64, 64)], 32)
        == "1 of 2 images were resized to 32x32 (bilinear; 2 size(s): 32x32, 64x64)"
    )
