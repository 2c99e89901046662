"""What every stage shares: the inputs and outcome of an audit, the stage names and their weights,
progress helpers and the small readers of a work folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthaudit.models.config import AuditConfig
from synthaudit.models.methods import Method, get_method
from synthaudit.models.results import ResultRow
from synthaudit.models.workdir import (
    STAGE_ARTIFACTS,
    WorkDir,
    atomic_write_json,
)

STAGES = ("decode", "pretrain", "embed", "search", "decide")
# Share of the overall progress each stage takes (roughly its share of CPU time).
STAGE_WEIGHTS = {"decode": 0.10, "pretrain": 0.55, "embed": 0.20, "search": 0.10, "decide": 0.05}
ARTIFACTS = STAGE_ARTIFACTS  # the file that marks each stage done (models/workdir.py names them all)

Progress = Callable[[float], None]


@dataclass
class AuditInputs:
    """Where the real and generated images are, optional labels for some real images, and an optional
    reference set: real images known not to be in the training set (scored with the real ones)."""

    real: Path
    generated: Path
    labels: dict[str, int] | None = None
    reference: Path | None = None


@dataclass
class AuditOutcome:
    """What an audit produced: the rows of results.csv, metrics.json and rejected files."""

    workdir: Path
    rows: list[ResultRow]
    metrics: dict[str, Any]
    rejected: dict[str, list[dict[str, str]]] = field(default_factory=dict)
    reference_rows: list[ResultRow] = field(default_factory=list)  # the reference set's images, scored


def _noop(_: float) -> None:
    return None


def _part(on_progress: Progress, i: int, span: float) -> Progress:
    """Progress of part i (span wide) of a stage, reported on the whole stage's 0..1 scale."""
    return lambda f: on_progress(span * (i + f))


def _named(on_progress: Callable[[str, float], None], stage: str) -> Progress:
    """A stage's progress reported with the stage's name."""
    return lambda f: on_progress(stage, f)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {name: data[name] for name in data.files}


def stage_done(stage: str, workdir: Path) -> bool:
    """True when the stage's artifact exists (the stage will be skipped)."""
    return WorkDir(workdir).stage_artifact(stage).exists()


def method_for(config: AuditConfig) -> Method:
    """The method object an audit config names."""
    return get_method(config.method)


def _record_timing(workdir: Path, stage: str, seconds: float) -> None:
    path = WorkDir(workdir).timings
    timings = json.loads(path.read_text()) if path.exists() else {}
    timings[stage] = round(seconds, 3)
    atomic_write_json(path, timings)
