"""Running the stages: each once per work folder, its time recorded, the config pinned."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path

from synthaudit.models.config import AuditConfig
from synthaudit.models.stages.common import (
    STAGE_WEIGHTS,
    STAGES,
    AuditInputs,
    AuditOutcome,
    Progress,
    _named,
    _noop,
    _record_timing,
    method_for,
    stage_done,
)
from synthaudit.models.stages.decide import run_decide
from synthaudit.models.stages.decode import run_decode
from synthaudit.models.stages.embed import run_embed
from synthaudit.models.stages.pretrain import run_pretrain
from synthaudit.models.stages.search import run_search
from synthaudit.models.workdir import (
    WorkDir,
    atomic_write_json,
)

_RUNNERS = {
    "decode": run_decode,
    "pretrain": run_pretrain,
    "embed": run_embed,
    "search": run_search,
    "decide": run_decide,
}


def _pin_config(workdir: Path, config: AuditConfig) -> None:
    """Record the config in the work folder; refuse to mix artifacts of two different configs."""
    path = WorkDir(workdir).config
    if not path.exists():
        atomic_write_json(path, config.to_dict())
    elif AuditConfig.from_dict(json.loads(path.read_text())) != AuditConfig.from_dict(
        json.loads(json.dumps(config.to_dict()))
    ):
        raise ValueError(f"work folder {workdir} holds an audit with another configuration")


def run_stage(
    stage: str, workdir: Path, inputs: AuditInputs, config: AuditConfig, on_progress: Progress = _noop
) -> None:
    """Run one stage unless its artifact already exists; records its wall time in timings.json."""
    if stage not in _RUNNERS:
        raise ValueError(f"unknown stage {stage!r}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    _pin_config(workdir, config)
    if stage_done(stage, workdir):
        on_progress(1.0)
        return
    started = time.perf_counter()
    _RUNNERS[stage](workdir, inputs, config, on_progress)
    _record_timing(workdir, stage, time.perf_counter() - started)


def read_outcome(workdir: Path) -> AuditOutcome:
    """Results, metrics and rejected files of a finished work folder."""
    from synthaudit.models.results import read_results_csv

    workdir = Path(workdir)
    folder = WorkDir(workdir)
    outcome_metrics = json.loads(folder.metrics.read_text())
    timings_path = folder.timings
    outcome_metrics["timings"] = json.loads(timings_path.read_text()) if timings_path.exists() else {}
    reference_csv = folder.reference_csv
    return AuditOutcome(
        workdir=workdir,
        rows=read_results_csv(folder.results_csv),
        metrics=outcome_metrics,
        rejected=json.loads(folder.rejected.read_text()),
        reference_rows=read_results_csv(reference_csv) if reference_csv.exists() else [],
    )


def run_audit(
    inputs: AuditInputs,
    config: AuditConfig,
    workdir: Path,
    on_progress: Callable[[str, float], None] | None = None,
) -> AuditOutcome:
    """Run every stage in this process and return the outcome."""
    method_for(config)  # fail fast on an unknown method
    for stage in STAGES:
        run_stage(stage, workdir, inputs, config, _named(on_progress, stage) if on_progress else _noop)
    return read_outcome(workdir)


def overall_progress(stage: str, fraction: float) -> float:
    """Overall progress 0-100 from the current stage and its own fraction."""
    done = sum(STAGE_WEIGHTS[s] for s in STAGES[: STAGES.index(stage)])
    return round(100.0 * (done + STAGE_WEIGHTS[stage] * min(max(fraction, 0.0), 1.0)), 1)
