"""Scale-out of the embed and search stages over several Celery workers.

When an audit's generated set is large (more than SHARD_SIZE images, or always when EMBED_SHARDS > 0),
the `embed` task embeds the real set once, fixes the shard ranges (models/shards.py), and replaces
itself with a chord: one `embed_shard` task per shard (embed the slice, search real -> slice top-k),
then `embed_merge` (merge the top-k exactly, write features.npz and neighbours.npz). The audit's chain
goes on after the chord: `search` finds its artifact written and skips, then `decide`. The result is
the unsharded one (same CSV). Every piece runs through worker/pipeline.py (status checks, heartbeat,
progress, failures), carries the dispatch attempt, and skips work already on disk.
"""

from __future__ import annotations

import json
import logging
import math
import uuid
from pathlib import Path
from typing import Any

from celery import Task, chord
from celery.exceptions import SoftTimeLimitExceeded

from synthaudit.app.core import repository as repo
from synthaudit.app.core.config import Settings
from synthaudit.app.core.db import session_scope
from synthaudit.app.core.jobs import stage_priority
from synthaudit.worker.base import StageTask, context
from synthaudit.worker.celery_app import celery_app, result_backend
from synthaudit.worker.context import WorkerContext
from synthaudit.worker.pipeline import Outcome, StagePart, execute_stage

# The ML core (models.*) is imported inside the functions that run it: it loads where a stage runs, not
# in the worker's main process.

log = logging.getLogger(__name__)
SHARD_TASK = "synthaudit.embed_shard"
MERGE_TASK = "synthaudit.embed_merge"


def planned_shards(settings: Settings, n_generated: int) -> int:
    """How many shards an audit with n_generated images gets (1 = not sharded)."""
    if result_backend(settings) is None or n_generated < 2:
        return 1  # a chord needs a result backend; the embedded runner never shards
    if settings.embed_shards > 0:
        return min(settings.embed_shards, n_generated)
    return max(1, math.ceil(n_generated / settings.shard_size))


def _span(on_progress: Any, start: float, end: float) -> Any:
    return lambda f: on_progress(start + (end - start) * min(max(f, 0.0), 1.0))


def _fractions(workdir: Path, index: int) -> tuple[float, float]:
    """The embed stage's progress before and after a shard: the real set and the finished shards first."""
    from synthaudit.models.shards import read_plan, shard_done

    try:
        ranges = read_plan(workdir)
    except FileNotFoundError:  # merged already (or the audit is gone): the pipeline will skip the shard
        return 0.0, 1.0
    n_real = _real_count(workdir)
    total = max(1, n_real + ranges[-1][1])
    done = n_real + sum(b - a for i, (a, b) in enumerate(ranges) if i != index and shard_done(workdir, i))
    start, stop = ranges[index]
    return min(1.0, done / total), min(1.0, (done + stop - start) / total)


def _real_count(workdir: Path) -> int:
    from synthaudit.models.shards import _count_rows
    from synthaudit.models.workdir import WorkDir

    return _count_rows(WorkDir(workdir).decoded, "real_ids")


def fan_out(task: Task, audit_id: str, attempt: int | None) -> str | None:
    """The sharded embed stage, or None when this audit is embedded in one piece (the usual task runs)."""
    from synthaudit.models.shards import generated_count, read_plan, run_real, write_plan
    from synthaudit.models.stages import STAGES
    from synthaudit.models.workdir import WorkDir

    ctx = context()
    workdir = ctx.storage.audit_workdir(uuid.UUID(audit_id))
    if not WorkDir(workdir).decoded.exists() or WorkDir(workdir).neighbours.exists():
        return None
    shards = planned_shards(ctx.settings, generated_count(workdir))
    if shards < 2:
        return None

    def real(workdir: Path, inputs: Any, config: Any, on_progress: Any) -> None:
        write_plan(workdir, config, shards)
        n_real = _real_count(workdir)
        run_real(workdir, config, _span(on_progress, 0.0, n_real / max(1, n_real + generated_count(workdir))))

    outcome = execute_stage(
        ctx, uuid.UUID(audit_id), "embed", (SoftTimeLimitExceeded,), attempt, StagePart("real", real)
    )
    if outcome is not Outcome.DONE:
        task.request.chain = None
        return outcome.value
    count = len(read_plan(workdir))
    log.info("audit %s: embed + search as %d shards", audit_id, count)
    options = {"queue": ctx.settings.celery_queue}
    suffix = "" if (attempt or 1) == 1 else f"-a{attempt}"
    header = [
        celery_app.signature(
            SHARD_TASK,
            args=(audit_id, attempt, i),
            immutable=True,
            task_id=f"{audit_id}-embed-shard{i}{suffix}",
            priority=stage_priority(STAGES.index("embed"), len(STAGES)),
            **options,
        )
        for i in range(count)
    ]
    body = celery_app.signature(
        MERGE_TASK,
        args=(audit_id, attempt),
        immutable=True,
        priority=stage_priority(STAGES.index("search"), len(STAGES)),
        **options,
    )
    raise task.replace(chord(header, body))


@celery_app.task(name=SHARD_TASK, base=StageTask, bind=True, ignore_result=False)
def embed_shard(self: Task, audit_id: str, attempt: int | None, index: int) -> str:
    """One shard: embed its slice of the generated set, search real -> slice (models.shards.run_shard)."""
    from synthaudit.models.shards import run_shard

    ctx = context()
    start, end = _fractions(ctx.storage.audit_workdir(uuid.UUID(audit_id)), index)

    def run(workdir: Path, inputs: Any, config: Any, on_progress: Any) -> None:
        run_shard(workdir, config, index, _span(on_progress, start, end))

    outcome = execute_stage(
        ctx,
        uuid.UUID(audit_id),
        "embed",
        (SoftTimeLimitExceeded,),
        attempt,
        StagePart(f"shard{index}", run, start),
    )
    log.info("audit %s: shard %d %s", audit_id, index, outcome.value)
    return outcome.value


@celery_app.task(name=MERGE_TASK, base=StageTask, bind=True)
def embed_merge(self: Task, audit_id: str, attempt: int | None) -> str:
    """After every shard: merge into features.npz and neighbours.npz (models.shards.run_merge)."""
    from synthaudit.models.shards import run_merge

    def run(workdir: Path, inputs: Any, config: Any, on_progress: Any) -> None:
        run_merge(workdir, config, on_progress)

    ctx = context()
    outcome = execute_stage(
        ctx, uuid.UUID(audit_id), "search", (SoftTimeLimitExceeded,), attempt, StagePart("merge", run)
    )
    if outcome is not Outcome.DONE:
        self.request.chain = None  # stopped or failed: search and decide have nothing to do
    else:
        _record_embed_timing(ctx, uuid.UUID(audit_id))
    return outcome.value


def _record_embed_timing(ctx: WorkerContext, audit_id: uuid.UUID) -> None:
    """The embed stage's time: the real set plus every shard's embedding (worker-seconds, summed)."""
    from synthaudit.models.workdir import WorkDir

    path = WorkDir(ctx.storage.audit_workdir(audit_id)).timings
    seconds = json.loads(path.read_text()).get("embed") if path.exists() else None
    if seconds is not None:
        with session_scope(ctx.sessions) as session:
            repo.record_stage_timing(session, audit_id, "embed", float(seconds))
