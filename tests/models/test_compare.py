"""Checkpoint comparison (synthaudit.models.compare): one decode of the real pool for the series, each
checkpoint's verdict equal to a separate audit's, Holm across the series, and the CLI's output folder."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_sets import make_membership_set, random_image

import synthaudit
from synthaudit.app.cli import main
from synthaudit.models import compare as cmp
from synthaudit.models.config import AuditConfig
from synthaudit.models.io import load_images
from synthaudit.models.stages import AuditInputs, run_audit
from synthaudit.models.stages import decode as decode_stage

CONFIG = AuditConfig(method="pixels", image_size=32)


@pytest.fixture(scope="module")
def series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """real/ (12 used, 12 not used), reference/ (40 fresh), and three checkpoints: epoch-5 draws fresh
    images (no leak), epoch-20 copies half the used images, epoch-80 copies all of them."""
    root = tmp_path_factory.mktemp("series")
    make_membership_set(root / "set", n_used=12, n_unused=12, n_fresh_generated=20, exact_copies=True, seed=3)
    shutil.move(root / "set" / "real", root / "real")
    rng = np.random.default_rng(4)
    (root / "reference").mkdir()
    for j in range(40):
        Image.fromarray(random_image(rng, 32)).save(root / "reference" / f"q{j:02d}.png")
    labels = dict(csv.reader((root / "set" / "labels.csv").open()))
    used = sorted(k for k, v in labels.items() if v == "1")
    copies = sorted((root / "set" / "generated").glob("*.png"))
    for name, share in (("epoch-5", 0.0), ("epoch-20", 0.5), ("epoch-80", 1.0)):
        folder = root / "ckpts" / name
        folder.mkdir(parents=True)
        for j in range(20):
            Image.fromarray(random_image(rng, 32)).save(folder / f"g{j:03d}.png")
        for k, image_id in enumerate(used[: int(share * len(used))]):
            shutil.copyfile(root / "real" / f"{image_id}.png", folder / f"c{k:03d}.png")
    assert copies  # the builder's own generated set is not used: the checkpoints replace it
    return root


def test_holm_and_names() -> None:
    assert cmp.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert cmp.holm([0.5, 0.001]) == pytest.approx([0.5, 0.002])
    assert cmp.checkpoint_step("ddpm-epoch-0040") == 40 and cmp.checkpoint_step("last") is None
    with pytest.raises(ValueError, match="letters, digits"):
        cmp.named_checkpoints([("=cmd", Path("a")), ("b", Path("b"))])
    with pytest.raises(ValueError, match="both named"):
        cmp.named_checkpoints([("a", Path("x")), ("a", Path("y"))])
    order = cmp.named_checkpoints([("step-100", Path("c")), ("step-20", Path("a")), ("final", Path("f"))])
    assert [c.name for c in order] == ["step-20", "step-100", "final"]


def test_the_real_pool_is_decoded_once_and_each_verdict_is_a_separate_audits(
    series: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads: list[str] = []

    def counting(source: str | Path, size: int, **kw: object) -> object:
        loads.append(Path(source).name)
        return load_images(source, size, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(decode_stage, "load_images", counting)
    monkeypatch.setattr(cmp, "load_images", counting)
    checkpoints = cmp.checkpoints_of(sorted((series / "ckpts").iterdir()))
    result = cmp.run_comparison(
        series / "real", checkpoints, CONFIG, tmp_path / "w", reference=series / "reference"
    )
    assert loads.count("real") == 1 and loads.count("reference") == 1  # once for the series
    assert sorted(x for x in loads if x.startswith("epoch")) == ["epoch-20", "epoch-5", "epoch-80"]
    monkeypatch.undo()
    assert [r.name for r in result.rows] == ["epoch-5", "epoch-20", "epoch-80"]
    for ckpt in checkpoints:
        alone = run_audit(
            AuditInputs(series / "real", ckpt.generated, reference=series / "reference"),
            CONFIG,
            tmp_path / ckpt.name,
        )
        together = result.outcomes[ckpt.name]
        assert [r.__dict__ for r in together.rows] == [r.__dict__ for r in alone.rows]
        assert together.metrics["leakage"] == alone.metrics["leakage"]
    verdicts = {r.name: r for r in result.rows}
    assert verdicts["epoch-80"].evidence is True and verdicts["epoch-5"].evidence is False
    raw = [r.p_value for r in result.rows]
    assert [r.holm_p for r in result.rows] == pytest.approx(
        cmp.holm([float(p) for p in raw if p is not None])
    )


def test_the_cli_writes_the_table_each_checkpoint_and_the_report(
    series: Path, tmp_path: Path, capsys
) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "out"
    code = main(
        [
            "compare", "--real", str(series / "real"), "--reference", str(series / "reference"),
            "--generated", str(series / "ckpts"), "--out", str(out), "--method", "pixels", "--image-size", "32",
        ]
    )  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0, printed.err
    table = list(csv.DictReader((out / "comparison.csv").open()))
    assert [r["checkpoint"] for r in table] == ["epoch-5", "epoch-20", "epoch-80"]
    assert table[-1]["evidence_after_holm"] == "1" and table[0]["evidence_after_holm"] == "0"
    for name in ("epoch-5", "epoch-20", "epoch-80"):
        metrics = json.loads((out / name / "metrics.json").read_text())
        assert metrics["leakage"]["verdict"] in {"detected", "not_detected"}
        assert (out / name / "results.csv").read_text().startswith("id,")
    page = (out / "comparison.html").read_text()
    assert "Holm" in page and "epoch-80" in page and "<script" not in page
    assert "Evidence of training-data leakage at level 0.05" in printed.out


def test_the_python_compare_is_the_clis(series: Path, tmp_path: Path) -> None:
    ckpts = sorted((series / "ckpts").iterdir())
    result = synthaudit.compare(
        series / "real", ckpts, reference=series / "reference", progress=False, method="pixels", image_size=32
    )
    try:
        result.write(tmp_path / "py")
        assert [r.name for r in result.rows] == ["epoch-5", "epoch-20", "epoch-80"]
        assert result.audits["epoch-80"].verdict == "detected"
        assert "Holm" in result._repr_html_() and "epoch-80" in result.summary
    finally:
        result.close()
    arrays = {
        c.name: np.stack([np.asarray(Image.open(p).convert("L")) for p in sorted(c.glob("*.png"))])
        for c in ckpts
    }
    from_arrays = synthaudit.compare(
        series / "real",
        arrays,
        reference=series / "reference",
        progress=False,
        method="pixels",
        image_size=32,
    )
    try:
        assert [r.verdict for r in from_arrays.rows] == [r.verdict for r in result.rows]
    finally:
        from_arrays.close()
    with pytest.raises(synthaudit.AuditInputError, match="at least two"):
        synthaudit.compare(series / "real", ckpts[:1], progress=False)
