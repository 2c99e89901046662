"""synthaudit.models.workdir: the names on disk are those the stages write (and those of earlier work folders); writers are
atomic (no partial file, no temp file left after a failure) and private (0600)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from synthetic_sets import make_membership_set

from synthaudit.models.config import AuditConfig
from synthaudit.models.shards import run_real, run_shard, write_plan
from synthaudit.models.stages import STAGES, AuditInputs, read_outcome, run_audit, run_stage
from synthaudit.models.workdir import WorkDir, atomic_save_npz, atomic_write_bytes, atomic_write_json


@pytest.fixture()
def loose_umask() -> Iterator[None]:
    """A umask that lets everyone read and write what is created (the writers must not depend on it)."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _files(folder: Path) -> set[Path]:
    return {p for p in folder.rglob("*") if p.is_file()}


def _mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_the_names_are_those_of_every_earlier_work_folder() -> None:
    w = WorkDir(Path("w"))
    names = {
        w.decoded: "images.npz",
        w.rejected: "rejected.json",
        w.pretrained: "encoder.done",
        w.features: "features.npz",
        w.neighbours: "neighbours.npz",
        w.alignment: "alignment.json",
        w.scores: "scores.npz",
        w.results_csv: "results.csv",
        w.reference_csv: "reference.csv",
        w.metrics: "metrics.json",
        w.overlap: "overlap.json",
        w.reference_check: "reference_check.npz",
        w.config: "config.json",
        w.timings: "timings.json",
        w.mae_checkpoint: "encoder.safetensors",
        w.fitted_encoder("pixels_whitened"): "whitening.safetensors",
        w.fitted_encoder("vit_tokens_whitened"): "vit_tokens.safetensors",
        w.shard_plan: "shards/plan.json",
        w.shard_real: "shards/real.npz",
        w.shard(3): "shards/shard-00003.npz",
        w.report("any"): "report-any.html",
        w.attempt_marker("embed"): ".attempt-embed",
    }
    assert {path: path.relative_to("w").as_posix() for path in names} == names
    assert w.fitted_encoder("pixels") is None
    assert [w.stage_artifact(s).name for s in STAGES] == [
        "images.npz",
        "encoder.done",
        "features.npz",
        "neighbours.npz",
        "metrics.json",
    ]
    assert WorkDir("w") == w  # a str is taken as a Path


def test_a_failed_write_leaves_the_old_file_and_no_temp_file(tmp_path: Path) -> None:
    path = tmp_path / "features.npz"
    atomic_save_npz(path, {"a": np.arange(3)})
    before = path.read_bytes()
    unpicklable = np.array([lambda: 0], dtype=object)
    with pytest.raises(Exception, match=r"pickle|lambda"):  # fails half way: "a" is written first
        atomic_save_npz(path, {"a": np.zeros(100_000), "b": unpicklable})
    assert path.read_bytes() == before
    with pytest.raises(TypeError):
        atomic_write_bytes(tmp_path / "new.json", "not bytes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="not JSON serialisable"):
        atomic_write_json(tmp_path / "new.json", {"x": object()})
    assert _files(tmp_path) == {path}  # no partial file, no temp file


def test_writers_make_private_files_whatever_the_umask(tmp_path: Path, loose_umask: None) -> None:
    atomic_write_bytes(tmp_path / "a.done", b"ok\n")
    atomic_save_npz(tmp_path / "b.npz", {"x": np.ones(2)})
    atomic_write_json(tmp_path / "c.json", {"n": np.int64(3), "f": np.float32(0.5)})
    assert {p.name: _mode(p) for p in _files(tmp_path)} == {"a.done": 0o600, "b.npz": 0o600, "c.json": 0o600}
    assert json.loads((tmp_path / "c.json").read_text()) == {"f": 0.5, "n": 3}
    with np.load(tmp_path / "b.npz") as data:  # a plain .npz (the name is not given a second suffix)
        assert data["x"].tolist() == [1.0, 1.0]


def test_an_audit_writes_exactly_what_workdir_names(tmp_path: Path, loose_umask: None) -> None:
    make_membership_set(tmp_path / "set", n_used=6, n_unused=12, n_fresh_generated=8)
    reference = tmp_path / "reference"
    reference.mkdir()
    for image in sorted((tmp_path / "set" / "real").iterdir())[:6]:
        image.rename(reference / image.name)
    inputs = AuditInputs(tmp_path / "set" / "real", tmp_path / "set" / "generated", reference=reference)
    work = WorkDir(tmp_path / "work")
    run_audit(inputs, AuditConfig(method="pixels", image_size=32), work.path)
    assert _files(work.path) == {
        work.decoded,
        work.rejected,
        work.pretrained,
        work.features,
        work.neighbours,
        work.scores,
        work.results_csv,
        work.reference_csv,
        work.metrics,
        work.overlap,
        work.input_notes,
        work.config,
        work.timings,
    } | ({work.reference_check} if work.reference_check.exists() else set())
    assert {_mode(p) for p in _files(work.path)} == {0o600}
    assert read_outcome(work.path).metrics["n_reference_set"] == 6


def test_fitted_encoders_and_shards_live_where_workdir_names_them(tmp_path: Path) -> None:
    make_membership_set(tmp_path / "set", n_used=8, n_unused=8, n_fresh_generated=8)
    inputs = AuditInputs(tmp_path / "set" / "real", tmp_path / "set" / "generated")
    config = AuditConfig(method="density_attribution", image_size=32, batch_size=8)
    work = WorkDir(tmp_path / "work")
    for stage in ("decode", "pretrain"):
        run_stage(stage, work.path, inputs, config)
    assert work.fitted_encoder("pixels_whitened") in _files(work.path)
    ranges = write_plan(work.path, config, shards=2)
    run_real(work.path, config)
    for i in range(len(ranges)):
        run_shard(work.path, config, i)
    assert len(ranges) == 2
    assert _files(work.shards) == {work.shard_plan, work.shard_real, work.shard(0), work.shard(1)}
