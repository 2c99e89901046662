"""The checkpoint comparison job: re-read the row, run models.compare.run_comparison, store the table.

Run by the embedded runner's thread (EmbeddedRunner.submit_call) or the Celery task
`synthaudit.run_comparison` (worker/comparison_tasks.py). The real and reference images are decoded once
for the series; each checkpoint runs every audit stage in its own folder under
STORAGE_DIR/comparisons/<id>/work (resumable: a re-sent job skips the stages already done). When the job
ends, the outputs (`synthaudit compare`'s folder) are moved into place as comparisons/<id>/out and the
work folder (decoded images, features) is removed. A heartbeat thread refreshes the row while it runs and
interrupts the job when it is cancelled or deleted (the recovery sweep re-sends a job whose heartbeat
stops, worker/recovery.py); a job that runs longer than STAGE_SOFT_TIME_LIMIT_S fails with a message.
Logs carry ids, counts and exception types only.
"""

from __future__ import annotations

import logging
import os
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthaudit.app.core import repository as repo
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.home import private_dir, private_tree
from synthaudit.app.core.tables import ACTIVE_STATUSES, utcnow
from synthaudit.worker.context import WorkerContext
from synthaudit.worker.errors import TRANSIENT_ERRORS, ComparisonStopped, unexpected_error
from synthaudit.worker.heartbeat import ComparisonHeartbeat, JobTimeLimit

if TYPE_CHECKING:
    from synthaudit.models.compare import Checkpoint, Comparison

log = logging.getLogger(__name__)


class ComparisonTimeLimitExceeded(BaseException):
    """The job ran longer than STAGE_SOFT_TIME_LIMIT_S (a BaseException: no `except Exception` swallows it)."""


def time_limit_message(limit_s: float) -> str:
    return (
        f"the comparison ran longer than its {limit_s:g} s time limit (STAGE_SOFT_TIME_LIMIT_S); compare "
        "fewer checkpoints at once, use a cheaper method or ask the operator to raise the limit"
    )


@dataclass(frozen=True)
class _Job:
    real: Path
    reference: Path | None
    checkpoints: list[Checkpoint]
    config: dict[str, Any]
    level: float


def _set(ctx: WorkerContext, comparison_id: uuid.UUID, **values: object) -> bool:
    """Update the row while it is queued or running; False when it was cancelled, deleted or ended."""
    with session_scope(ctx.sessions) as session:
        comparison = repo.get_comparison(session, comparison_id)
        if comparison is None or comparison.status not in ACTIVE_STATUSES:
            return False
        for key, value in values.items():
            setattr(comparison, key, value)
        return True


def _begin(ctx: WorkerContext, comparison_id: uuid.UUID) -> _Job | str | None:
    """Mark the comparison running and read its inputs; None when there is nothing to do, a message when
    one of its datasets is gone."""
    from synthaudit.models.compare import Checkpoint

    with session_scope(ctx.sessions) as session:
        comparison = repo.get_comparison(session, comparison_id)
        if comparison is None or comparison.status not in ACTIVE_STATUSES:
            return None
        checkpoints = repo.comparison_checkpoints(session, comparison_id)
        if comparison.real_dataset_id is None or any(c.dataset_id is None for c in checkpoints):
            return "a dataset of this comparison (real or generated) was deleted meanwhile"
        comparison.status, comparison.heartbeat_at = "running", utcnow()
        comparison.started_at = comparison.started_at or utcnow()
        storage = ctx.storage
        reference = comparison.reference_dataset_id
        return _Job(
            real=storage.dataset_images(comparison.real_dataset_id),
            reference=storage.dataset_images(reference) if reference else None,
            checkpoints=[
                Checkpoint(c.name, storage.dataset_images(c.dataset_id))
                for c in checkpoints
                if c.dataset_id is not None
            ],
            config=comparison.config,
            level=comparison.level,
        )


class ProgressWriter:
    """run_comparison's on_progress: the overall percentage over the series (the shared decode, then each
    checkpoint's stages by their weights) and the current step ("2/3 embed"), written at most every
    PROGRESS_INTERVAL_S; stops the job once the row is no longer active."""

    def __init__(self, ctx: WorkerContext, comparison_id: uuid.UUID, n_checkpoints: int) -> None:
        self.ctx, self.comparison_id, self.n = ctx, comparison_id, n_checkpoints
        self.stage: str | None = None
        self._last = 0.0

    def percent(self, stage: str, fraction: float) -> float:
        from synthaudit.models.stages import overall_progress

        if stage == "decode real":
            done = min(max(fraction, 0.0), 1.0)
        else:
            position, name = stage.split(" ", 1)
            k = int(position.split("/")[0])
            done = k + overall_progress(name, fraction) / 100.0  # the shared decode is unit 0
        return round(min(99.9, 100.0 * done / (self.n + 1)), 1)

    def __call__(self, stage: str, fraction: float) -> None:
        changed, self.stage = stage != self.stage, stage
        now = time.monotonic()
        if not changed and now - self._last < self.ctx.settings.progress_interval_s:
            return
        self._last = now
        try:
            alive = _set(self.ctx, self.comparison_id, stage=stage, progress=self.percent(stage, fraction))
        except TRANSIENT_ERRORS as exc:  # progress is best effort
            log.warning("comparison %s: progress not written (%s)", self.comparison_id, type(exc).__name__)
            return
        if not alive:
            raise ComparisonStopped


def row_dict(row: Any) -> dict[str, Any]:
    """A models.compare.ComparisonRow as the JSON its checkpoint row stores (non-finite numbers as null)."""
    from synthaudit.models.summary import finite

    return dict(finite(asdict(row)))


def write_outputs(series: Comparison, folder: Path) -> Path:
    """`synthaudit compare`'s output folder plus each checkpoint's ImageCLEF CSV, written beside the final
    place and moved there in one rename (private modes)."""
    from synthaudit.models.compare_report import write_comparison_folder
    from synthaudit.models.results import write_results_csv

    staging, out = folder / "out.partial", folder / "out"
    _rmtree(staging)
    private_dir(staging)
    write_comparison_folder(series, staging)
    for name, outcome in series.outcomes.items():
        write_results_csv(outcome.rows, staging / name / "results-imageclef.csv", fmt="imageclef")
    private_tree(staging)
    _rmtree(out)
    os.replace(staging, out)
    return out


def _rmtree(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def run_comparison_job(ctx: WorkerContext, comparison_id: uuid.UUID) -> str:
    """Run one comparison; returns its final status (or 'stopped')."""
    from synthaudit.models.compare import run_comparison, summary_sentence
    from synthaudit.models.config import AuditConfig

    job = _begin(ctx, comparison_id)
    if job is None:
        return "stopped"
    if isinstance(job, str):
        return _fail(ctx, comparison_id, job)
    folder = ctx.storage.comparison_dir(comparison_id)
    progress = ProgressWriter(ctx, comparison_id, len(job.checkpoints))
    limit_s = ctx.settings.stage_soft_time_limit_s
    time_limit = JobTimeLimit(limit_s, ComparisonTimeLimitExceeded, "synthaudit-comparison-time-limit")
    try:
        private_dir(folder / "work")
        with ComparisonHeartbeat(ctx, comparison_id), time_limit:
            series = run_comparison(
                job.real,
                job.checkpoints,
                AuditConfig.from_dict(job.config),
                folder / "work",
                reference=job.reference,
                level=job.level,
                on_progress=progress,
            )
            write_outputs(series, folder)
    except ComparisonTimeLimitExceeded:
        log.warning("comparison %s: passed its time limit of %s s", comparison_id, limit_s)
        return _fail(ctx, comparison_id, time_limit_message(limit_s))
    except ComparisonStopped:
        log.info("comparison %s: stopped (cancelled or deleted)", comparison_id)
        return _stopped(ctx, comparison_id)
    except TRANSIENT_ERRORS:
        raise  # retried (Celery), or resumed from the work folder later
    except FileNotFoundError:
        return _fail(ctx, comparison_id, "the comparison's input files are missing (was a dataset deleted?)")
    except MemoryError:
        return _fail(ctx, comparison_id, "the comparison ran out of memory; use a smaller image_size")
    except ValueError as exc:  # ImageSetError and every config/data problem the engine reports
        log.info("comparison %s: failed at %s (%s)", comparison_id, progress.stage, type(exc).__name__)
        return _fail(ctx, comparison_id, f"{progress.stage or 'decode real'}: {exc}")
    except Exception as exc:  # noqa: BLE001 - any other error fails the job (its type, never its message)
        return _fail(
            ctx,
            comparison_id,
            unexpected_error(f"comparison {comparison_id}", exc, time_limit_message(limit_s)),
        )
    return _succeed(ctx, comparison_id, series, summary_sentence(series))


def _succeed(ctx: WorkerContext, comparison_id: uuid.UUID, series: Comparison, summary: str) -> str:
    """Store the table and mark the comparison succeeded in one transaction; the work folder goes."""
    rows = {row.name: row_dict(row) for row in series.rows}
    with session_scope(ctx.sessions) as session:
        comparison = repo.get_comparison(session, comparison_id)
        stored = comparison is not None and comparison.status in ACTIVE_STATUSES
        if comparison is not None and stored:
            repo.store_comparison_rows(session, comparison_id, rows)
            comparison.status, comparison.progress, comparison.stage = "succeeded", 100.0, None
            comparison.summary, comparison.error, comparison.finished_at = summary, None, utcnow()
    if not stored:
        return _stopped(ctx, comparison_id)
    _rmtree(ctx.storage.comparison_dir(comparison_id) / "work")
    evidence = sum(1 for r in series.rows if r.evidence)
    log.info(
        "comparison %s: succeeded (%d checkpoints, %d with evidence)", comparison_id, len(rows), evidence
    )
    return "succeeded"


def _fail(ctx: WorkerContext, comparison_id: uuid.UUID, message: str) -> str:
    log.info("comparison %s: failed", comparison_id)
    _set(ctx, comparison_id, status="failed", error=message, finished_at=utcnow())
    ctx.storage.remove_comparison(comparison_id)
    return "failed"


def _stopped(ctx: WorkerContext, comparison_id: uuid.UUID) -> str:
    """Cancelled or deleted: its files go (the job may have written some since)."""
    ctx.storage.remove_comparison(comparison_id)
    return "stopped"
