"""The mistakes users make with a reference, on the command line: a reference that repeats candidates is
refused (or, with --drop-reference-duplicates, those candidates are dropped and counted), exact duplicates
within a set are warned about, and --labels ids that are not among the real images are refused."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_sets import random_image

from synthaudit.app.cli import main
from synthaudit.models.report import render_report

FAST = ["--method", "pixels", "--image-size", "32", "--seed", "0"]


def _novel_folder(root: Path, n: int, seed: int, prefix: str) -> Path:
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.fromarray(random_image(rng, 32)).save(root / f"{prefix}{i:04d}.png")
    return root


@pytest.fixture(scope="module")
def novel(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """300 real images no generator saw, 300 generated fresh ones, and a reference that repeats 90 (30 %)
    of the real images as the same files."""
    root = tmp_path_factory.mktemp("novel")
    real = _novel_folder(root / "real", 300, seed=1, prefix="r")
    generated = _novel_folder(root / "generated", 300, seed=2, prefix="g")
    reference = root / "reference"
    reference.mkdir()
    for path in sorted(real.glob("*.png"))[::10][:30] + sorted(real.glob("*.png"))[1::10][:30]:
        shutil.copyfile(path, reference / f"ref-{path.name}")
    for path in sorted(real.glob("*.png"))[2::10][:30]:
        shutil.copyfile(path, reference / f"ref-{path.name}")
    return real, generated, reference


def _audit(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["audit", *args, *FAST])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_a_reference_that_repeats_candidates_is_refused_in_one_line(novel, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    real, generated, reference = novel
    code, out, err = _audit(
        capsys, "--real", str(real), "--generated", str(generated), "--reference", str(reference),
        "--out", str(tmp_path / "results.csv"),
    )  # fmt: skip
    assert code == 2
    line = err.strip().splitlines()[-1]
    assert line.startswith("synthaudit: 90 real candidate image(s) are also in the reference")
    assert "r0000, r0001, r0002" in line and "(and 85 more)" in line
    assert "--drop-reference-duplicates" in line
    assert not (tmp_path / "results.csv").exists()
    assert "evidence of training-data leakage" not in out


def test_dropped_duplicates_leave_a_null_audit_without_evidence(novel, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    real, generated, reference = novel
    out_csv, metrics, workdir = tmp_path / "results.csv", tmp_path / "metrics.json", tmp_path / "work"
    code, out, err = _audit(
        capsys, "--real", str(real), "--generated", str(generated), "--reference", str(reference),
        "--out", str(out_csv), "--metrics", str(metrics), "--workdir", str(workdir),
        "--drop-reference-duplicates",
    )  # fmt: skip
    assert code == 0, err
    repeated = {p.name.removeprefix("ref-").removesuffix(".png") for p in reference.glob("*.png")}
    rows = list(csv.DictReader(out_csv.open()))
    candidates = {r["id"] for r in rows if r["role"] == "candidate"}
    assert len(candidates) == 210 and not candidates & repeated
    assert "warning: dropped 90 candidate(s) that repeat reference images: r0000" in err
    verdict = out.splitlines()[1]
    assert not verdict.startswith("evidence of training-data leakage"), verdict
    overlap = json.loads((workdir / "overlap.json").read_text())
    assert overlap["dropped_candidates"] == 90 and overlap["duplicates_reference_candidates"] == 90
    document = json.loads(metrics.read_text())
    assert document["counts"]["candidates"] == 210
    assert document["reference_overlap"]["dropped_candidates"] == 90  # the decide stage carries overlap.json
    page = render_report(workdir)
    assert "90 candidate image(s) repeated reference images and were left out of the audit" in page
    assert "ref-" not in page  # counted, never named


def test_exact_duplicates_within_the_real_set_are_a_warning(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    real = _novel_folder(tmp_path / "real", 20, seed=3, prefix="r")
    shutil.copyfile(real / "r0004.png", real / "r9999.png")
    generated = _novel_folder(tmp_path / "generated", 20, seed=4, prefix="g")
    code, _, err = _audit(
        capsys, "--real", str(real), "--generated", str(generated), "--out", str(tmp_path / "out.csv")
    )
    assert code == 0, err
    assert "warning: 1 image(s) repeat the pixels of an earlier image in the real set: r9999" in err


def test_label_ids_not_among_the_real_images_are_refused(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    real = _novel_folder(tmp_path / "real", 12, seed=5, prefix="r")
    generated = _novel_folder(tmp_path / "generated", 12, seed=6, prefix="g")
    labels = tmp_path / "labels.csv"
    labels.write_text("id,used\nr0001,0\nr0002,0\nx1,0\nx2,1\nx3,0\nx4,0\nx5,0\nx6,0\nx7,0\n")
    code, _, err = _audit(
        capsys, "--real", str(real), "--generated", str(generated), "--labels", str(labels),
        "--out", str(tmp_path / "out.csv"),
    )  # fmt: skip
    assert code == 2
    assert err.strip().splitlines()[-1] == (
        "synthaudit: labels: 7 id(s) are not among the real images: x1, x2, x3, x4, x5 (and 2 more)"
    )
    assert not (tmp_path / "out.csv").exists()
