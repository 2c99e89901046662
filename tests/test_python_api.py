"""The Python API (issue 19): `synthaudit.audit(...)` gives the CLI's CSV and metrics, byte for byte, from
folders, file lists and arrays, and the CLI's messages as typed exceptions."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_sets import make_membership_set, random_image

import synthaudit
from synthaudit.app.cli import main

FAST = {"method": "pixels", "image_size": 32}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """real/ (12 used exact copies + 12 not used), generated/, and a reference/ of 40 fresh images."""
    root = tmp_path_factory.mktemp("api")
    make_membership_set(root, n_used=12, n_unused=12, n_fresh_generated=20, exact_copies=True)
    rng = np.random.default_rng(9)
    (root / "reference").mkdir()
    for j in range(40):
        Image.fromarray(random_image(rng, 32)).save(root / "reference" / f"q{j:02d}.png")
    return root


def test_the_same_csv_and_metrics_as_the_cli(data: Path, tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    cli_csv, cli_metrics = tmp_path / "cli.csv", tmp_path / "cli.json"
    code = main(
        [
            "audit", "--real", str(data / "real"), "--generated", str(data / "generated"),
            "--reference", str(data / "reference"), "--method", "pixels", "--image-size", "32",
            "--out", str(cli_csv), "--metrics", str(cli_metrics),
        ]
    )  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = synthaudit.audit(
        data / "real", data / "generated", reference=data / "reference", progress=False, **FAST
    )
    try:
        api_csv = result.write_csv(tmp_path / "api.csv")
        assert api_csv.read_bytes() == cli_csv.read_bytes()
        assert result.metrics() == json.loads(cli_metrics.read_text())
        assert result.calibrated and result.verdict == result.metrics()["leakage"]["verdict"]
        assert result.reference_check is not None and result.reference_check["passed"] is True
        imageclef = result.write_csv(tmp_path / "ic.csv", format="imageclef").read_text().splitlines()
        assert len(imageclef) == 24 and all(line.count(",") == 1 for line in imageclef)
        card = result._repr_html_()
        assert "training-data leakage" in card and "reference images look like the candidates" in card
        page = result.report(tmp_path / "audit.html").read_text()
        assert page.startswith("<!doctype html>") or "<html" in page
    finally:
        result.close()
    assert not result.workdir.exists()  # the private temporary work folder is gone


def test_file_lists_and_arrays_are_inputs_too(data: Path) -> None:
    files = sorted((data / "real").glob("*.png"))
    from_list = synthaudit.audit(files, data / "generated", progress=False, **FAST)
    from_folder = synthaudit.audit(data / "real", data / "generated", progress=False, **FAST)
    try:
        assert [r.__dict__ for r in from_list.rows] == [r.__dict__ for r in from_folder.rows]
        assert from_list.verdict == "uncalibrated" and from_list.leakage is None
    finally:
        from_list.close()
        from_folder.close()
    real = np.stack([np.asarray(Image.open(p).convert("L")) for p in files])
    generated = np.stack(
        [np.asarray(Image.open(p).convert("L")) for p in sorted((data / "generated").glob("*.png"))]
    )
    from_arrays = synthaudit.audit(real, generated, progress=False, **FAST)
    try:
        assert [r.id for r in from_arrays.rows] == [f"r{i:06d}" for i in range(len(files))]
        by_position = {f"r{i:06d}": p.stem for i, p in enumerate(files)}
        scores = {r.id: r.score for r in from_folder.rows}
        assert all(abs(r.score - scores[by_position[r.id]]) < 1e-9 for r in from_arrays.rows)
    finally:
        from_arrays.close()


def test_errors_are_the_clis_messages_as_typed_exceptions(data: Path, tmp_path: Path) -> None:
    with pytest.raises(synthaudit.AuditInputError, match="does not exist"):
        synthaudit.audit(tmp_path / "nothing", data / "generated", progress=False)
    with pytest.raises(synthaudit.AuditConfigError, match="method"):
        synthaudit.audit(data / "real", data / "generated", method="no-such-method", progress=False)
    with pytest.raises(synthaudit.AuditConfigError, match="known not to be used"):
        synthaudit.audit(data / "real", data / "generated", decision="fdr", progress=False)
    with pytest.raises(synthaudit.AuditInputError, match="uint8"):
        synthaudit.audit(np.zeros((3, 8, 8), np.float32), data / "generated", progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(synthaudit.AuditInputError, match="no readable images"):
        synthaudit.audit(tmp_path / "empty", data / "generated", progress=False)


def test_to_pandas_gives_the_rows_as_a_data_frame(data: Path) -> None:
    import pandas

    result = synthaudit.audit(data / "real", data / "generated", progress=False, **FAST)
    try:
        frame = result.to_pandas()
        assert isinstance(frame, pandas.DataFrame) and len(frame) == len(result.rows)
        assert list(frame["id"]) == [r.id for r in result.rows] and "score" in frame.columns
    finally:
        result.close()


def test_to_pandas_names_the_optional_extra_when_pandas_is_missing(data: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    result = synthaudit.audit(data / "real", data / "generated", progress=False, **FAST)
    try:
        monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
        with pytest.raises(ImportError, match=r"synthaudit\[pandas\]"):
            result.to_pandas()
    finally:
        result.close()


def test_an_explicit_workdir_is_kept(data: Path, tmp_path: Path) -> None:
    result = synthaudit.audit(
        data / "real", data / "generated", workdir=tmp_path / "w", progress=False, **FAST
    )
    result.close()
    assert (tmp_path / "w" / "metrics.json").exists() and result.workdir == tmp_path / "w"
