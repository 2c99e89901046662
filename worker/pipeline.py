"""One audit stage for one audit id: re-read the row, run the engine's stage, write progress and outcome.

Shared by the Celery tasks (worker/tasks.py) and the embedded runner (worker/runner.py); the database
row is the job's truth, the work folder holds the engine's artifacts (each written atomically).
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from synthaudit.app.core import repository as repo
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.encoder_refs import resolve_checkpoint
from synthaudit.app.core.logs import log_unexpected
from synthaudit.app.core.tables import ACTIVE_STATUSES
from synthaudit.app.core.webhooks import notify_finished
from synthaudit.worker.audit_failure import fail
from synthaudit.worker.context import WorkerContext
from synthaudit.worker.errors import TRANSIENT_ERRORS, AuditStopped
from synthaudit.worker.heartbeat import AuditHeartbeat

# The ML core (models.*) is imported inside the functions that run it: it loads where a stage runs, not
# in every process that imports the worker (the API process in the embedded mode).

if TYPE_CHECKING:
    from synthaudit.models.results import ResultRow
    from synthaudit.models.stages import AuditInputs

log = logging.getLogger(__name__)
MAX_CRASHED_ATTEMPTS = 3


class Outcome(enum.Enum):
    DONE = "done"  # the stage finished (after decide: the audit succeeded)
    STOPPED = "stopped"  # cancelled, deleted or already finished: nothing more to do
    FAILED = "failed"  # marked failed with a message for the user


@dataclass(frozen=True)
class _Job:
    config: dict[str, Any]
    labels: dict[str, int] | None
    real_dataset_id: uuid.UUID | None
    generated_dataset_id: uuid.UUID | None
    reference_dataset_id: uuid.UUID | None = None
    has_reference: bool = False  # the audit was created with a reference set (its id may since be NULL)


@dataclass(frozen=True)
class StagePart:
    """A piece of a stage run as its own task (worker/sharding.py): `run(workdir, inputs, config,
    on_progress)` instead of the whole stage; its own crash marker; no stage timing or 100 % progress.
    `start` is the stage's progress fraction when the part begins."""

    name: str
    run: Any
    start: float = 0.0


class ProgressReporter:
    """The engine's on_progress callback: throttled writes of overall progress; stops a cancelled audit."""

    def __init__(
        self, ctx: WorkerContext, audit_id: uuid.UUID, stage: str, stopped: threading.Event | None = None
    ) -> None:
        self.ctx, self.audit_id, self.stage = ctx, audit_id, stage
        self.stopped = stopped  # set by the stage's AuditHeartbeat (worker/heartbeat.py)
        self.last = 0.0

    def __call__(self, fraction: float) -> None:
        if self.stopped is not None and self.stopped.is_set():
            raise AuditStopped
        now = time.monotonic()
        if now - self.last < self.ctx.settings.progress_interval_s:
            return
        self.last = now
        self.write(fraction)

    def write(self, fraction: float) -> None:
        from synthaudit.models.stages import overall_progress

        progress = min(overall_progress(self.stage, fraction), 99.9)
        try:
            with session_scope(self.ctx.sessions) as session:
                alive = repo.set_progress(session, self.audit_id, self.stage, progress)
        except TRANSIENT_ERRORS as exc:  # progress is best effort: never restart a long stage for it
            log.warning("audit %s: progress not written (%s)", self.audit_id, type(exc).__name__)
            return
        if not alive:
            raise AuditStopped


def _begin(
    ctx: WorkerContext, audit_id: uuid.UUID, stage: str, attempt: int | None = None, start: float = 0.0
) -> _Job | None:
    """Mark the audit running at this stage; None when it is gone, cancelled or finished, or when the
    task belongs to an older dispatch attempt (worker/recovery.py re-dispatched the audit since)."""
    from synthaudit.models.stages import overall_progress

    with session_scope(ctx.sessions) as session:
        audit = repo.get_audit(session, audit_id)
        if audit is None or audit.status not in ACTIVE_STATUSES:
            return None
        if attempt is not None and (audit.attempt or 1) != attempt:
            log.info("audit %s: %s task of attempt %d superseded", audit_id, stage, attempt)
            return None
        job = _Job(
            audit.config,
            audit.labels,
            audit.real_dataset_id,
            audit.generated_dataset_id,
            audit.reference_dataset_id,
            has_reference=_created_with_reference(audit),
        )
        if not repo.start_stage(session, audit_id, stage, overall_progress(stage, start)):
            return None
    return job


def _created_with_reference(audit: Any) -> bool:
    """Whether the audit was created with a reference set: the trail keeps it after the dataset is deleted
    (ondelete SET NULL nulls the id)."""
    inputs = (audit.trail or {}).get("inputs") or {}
    return audit.reference_dataset_id is not None or bool(inputs.get("reference"))


def _inputs(ctx: WorkerContext, job: _Job) -> AuditInputs | None:
    """The engine's AuditInputs of a job; None when one of its datasets was deleted."""
    from synthaudit.models.stages import AuditInputs

    if job.real_dataset_id is None or job.generated_dataset_id is None:
        return None
    if job.has_reference and job.reference_dataset_id is None:
        return None
    return AuditInputs(
        real=ctx.storage.dataset_images(job.real_dataset_id),
        generated=ctx.storage.dataset_images(job.generated_dataset_id),
        labels=job.labels,
        reference=ctx.storage.dataset_images(job.reference_dataset_id) if job.reference_dataset_id else None,
    )


def execute_stage(
    ctx: WorkerContext,
    audit_id: uuid.UUID,
    stage: str,
    timeout_errors: tuple[type[BaseException], ...] = (),
    attempt: int | None = None,
    part: StagePart | None = None,
) -> Outcome:
    """Run one stage (or one part of it) of one audit. Transient errors propagate (the caller retries);
    others end the audit."""
    outcome = _execute(ctx, audit_id, stage, timeout_errors, attempt, part)
    if outcome is Outcome.STOPPED:
        _forget_if_deleted(ctx, audit_id)
    return outcome


def _forget_if_deleted(ctx: WorkerContext, audit_id: uuid.UUID) -> None:
    """An audit deleted while it ran may have written artifacts since: remove its work folder."""
    with session_scope(ctx.sessions) as session:
        deleted = repo.get_audit(session, audit_id) is None
    if deleted:
        ctx.storage.remove_audit(audit_id)


def _execute(
    ctx: WorkerContext,
    audit_id: uuid.UUID,
    stage: str,
    timeout_errors: tuple[type[BaseException], ...] = (),
    attempt: int | None = None,
    part: StagePart | None = None,
) -> Outcome:
    """execute_stage without the clean-up."""
    from synthaudit.models.config import AuditConfig
    from synthaudit.models.stages import overall_progress, run_stage

    job = _begin(ctx, audit_id, stage, attempt, part.start if part is not None else 0.0)
    if job is None:
        return Outcome.STOPPED
    inputs = _inputs(ctx, job)
    if inputs is None:
        fail(ctx, audit_id, "a dataset of this audit (real, generated or reference) was deleted meanwhile")
        return Outcome.FAILED
    workdir = ctx.storage.audit_workdir(audit_id)
    marker = stage if part is None else f"{stage}-{part.name}"
    crashes = _crashed_attempts(workdir, marker)
    if crashes >= MAX_CRASHED_ATTEMPTS:
        fail(
            ctx,
            audit_id,
            f"stage {stage!r} was interrupted {crashes} times because the worker process died (often: out "
            "of memory); use a smaller image_size or batch_size, or ask the operator",
        )
        return Outcome.FAILED
    started = time.perf_counter()
    try:
        # `encoder:<id>` in the config -> the encoder's weights file
        config = AuditConfig.from_dict(resolve_checkpoint(job.config, ctx.storage))
        with _attempt(workdir, marker, crashes), AuditHeartbeat(ctx, audit_id, stage, attempt) as heartbeat:
            reporter = ProgressReporter(ctx, audit_id, stage, heartbeat.stopped)
            if part is None:
                run_stage(stage, workdir, inputs, config, reporter)
            else:
                part.run(workdir, inputs, config, reporter)
    except AuditStopped:
        log.info("audit %s: stopped during %s (cancelled or deleted)", audit_id, stage)
        return Outcome.STOPPED
    except TRANSIENT_ERRORS:
        raise
    except timeout_errors:
        limit = ctx.settings.stage_soft_time_limit_s
        fail(
            ctx,
            audit_id,
            f"stage {stage!r} ran longer than its {limit} s time limit; use a smaller "
            "pretraining budget (pretrain_images_seen) or ask the operator to raise the limit",
        )
        return Outcome.FAILED
    except ValueError as exc:  # ImageSetError and every config/data problem the engine reports
        log.info("audit %s: failed at %s (%s)", audit_id, stage, type(exc).__name__)
        fail(ctx, audit_id, f"{stage}: {exc}")
        return Outcome.FAILED
    except FileNotFoundError:
        fail(ctx, audit_id, f"{stage}: the audit's input files are missing (was a dataset deleted?)")
        return Outcome.FAILED
    except MemoryError:
        fail(
            ctx, audit_id, f"stage {stage!r} ran out of memory; use smaller images (image_size) or batch_size"
        )
        return Outcome.FAILED
    except Exception as exc:  # noqa: BLE001 - a bug or a broken environment: fail, tell the operator
        log_unexpected(f"audit {audit_id}: stage {stage}", exc)  # type and stack only, never the message
        fail(
            ctx,
            audit_id,
            f"internal error in stage {stage!r} ({type(exc).__name__}); "
            "the operator's worker logs have the details",
        )
        return Outcome.FAILED
    seconds = time.perf_counter() - started
    if part is not None:
        return Outcome.DONE
    if stage == "decide":
        return _finish(ctx, audit_id, seconds)
    with session_scope(ctx.sessions) as session:
        repo.record_stage_timing(session, audit_id, stage, seconds)
        alive = repo.set_progress(session, audit_id, stage, overall_progress(stage, 1.0))
    return Outcome.DONE if alive else Outcome.STOPPED


def _attempt_marker(workdir: Path, stage: str) -> Path:
    from synthaudit.models.workdir import WorkDir

    return WorkDir(workdir).attempt_marker(stage)


def _crashed_attempts(workdir: Path, stage: str) -> int:
    """How many earlier attempts of this stage ended with the process dying (their marker outlived them)."""
    marker = _attempt_marker(workdir, stage)
    try:
        return int(marker.read_text()) + 1
    except (FileNotFoundError, ValueError):
        return 0


@contextmanager
def _attempt(workdir: Path, stage: str, crashes: int) -> Iterator[None]:
    """A marker that exists while the stage runs: only a killed process (OOM, SIGKILL) leaves it behind.

    A redelivered task (acks_late + reject_on_worker_lost) then counts the crash, so a stage that
    kills its worker every time fails the audit instead of looping forever.
    """
    marker = _attempt_marker(workdir, stage)
    workdir.mkdir(parents=True, exist_ok=True)
    marker.write_text(str(crashes))
    try:
        yield
    finally:
        marker.unlink(missing_ok=True)


def _result_dicts(
    rows: list[ResultRow], evidence: dict[str, list[tuple[str, float]]], source: str, start: int = 0
) -> list[dict[str, Any]]:
    """`audit_results` rows of engine ResultRows: positions from `start`, all k nearest generated ids."""
    from synthaudit.models.summary import finite

    out = []
    for position, row in enumerate(rows, start=start):
        nearest = evidence.get(row.id) or [(row.nearest_generated, row.similarity)]
        out.append(
            {
                "position": position,
                "image_name": row.id,
                "used": int(row.used),
                "score": float(row.score),
                "nearest_generated": [name for name, _ in nearest],
                "similarities": finite([float(sim) for _, sim in nearest]),
                "p_value": finite(row.p_value),
                "q_value": finite(row.q_value),
                "role": row.role,
                "source": source,
            }
        )
    return out


def outcome_rows(workdir: Any) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Result rows (the real images, then the reference set's images) and the metrics row of a finished
    work folder. The metrics row keeps the decide summary as written: GET /metrics rebuilds the CLI's
    metrics document from it (models.summary.metrics_document)."""
    from synthaudit.models.stages import read_evidence, read_outcome
    from synthaudit.models.summary import audit_counts, finite

    outcome = read_outcome(workdir)
    rows = _result_dicts(outcome.rows, read_evidence(workdir), "real")
    if outcome.reference_rows:
        evidence = read_evidence(workdir, reference=True)
        rows += _result_dicts(outcome.reference_rows, evidence, "reference", start=len(rows))
    summary = dict(outcome.metrics)
    summary.pop("timings", None)
    rejected = outcome.rejected or {}
    metrics = {
        "threshold": float(summary["threshold"]),
        "decision_rule": str(summary.get("decision_rule", "")),
        "counts": audit_counts(summary, rejected),
        "metrics": finite(summary),
        "rejected": rejected,
    }
    return rows, metrics


def _finish(ctx: WorkerContext, audit_id: uuid.UUID, seconds: float) -> Outcome:
    """Persist results and metrics and mark the audit succeeded, in one transaction."""
    rows, metrics = outcome_rows(ctx.storage.audit_workdir(audit_id))
    with session_scope(ctx.sessions) as session:
        repo.record_stage_timing(session, audit_id, "decide", seconds)
        stored = repo.store_outcome(session, audit_id, rows, metrics)
    if stored:
        real = sum(1 for r in rows if r["source"] == "real")
        log.info("audit %s: succeeded (%d real, %d reference images)", audit_id, real, len(rows) - real)
        notify_finished(ctx.sessions, audit_id, ctx.settings)
    return Outcome.DONE if stored else Outcome.STOPPED
