"""Checkpoint comparisons: create (validated), read, list, cancel, delete, and their files.

A comparison audits 2..MAX_COMPARISON_CHECKPOINTS generated sets against one real set and one reference
(models/compare.py) as one job (worker/comparison_jobs.py). Its files live in
STORAGE_DIR/comparisons/<id>/out: comparison.csv, comparison.html and <checkpoint>/results.csv (the
`synthaudit compare` output folder); the table's lines are also stored on the checkpoint rows.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

from sqlalchemy.orm import Session

from synthaudit.app.core import repository as repo
from synthaudit.app.core.jobs import Dispatcher
from synthaudit.app.core.storage import Storage
from synthaudit.app.core.tables import Comparison, ComparisonCheckpoint
from synthaudit.app.problems import Conflict, Gone, NotFound, NotReady, QueueUnavailable, Unprocessable
from synthaudit.app.schemas_comparisons import (
    CheckpointOut,
    ComparisonCreate,
    ComparisonLinks,
    ComparisonOut,
    ComparisonPage,
)
from synthaudit.app.services.audits import check_dataset, check_reference_overlap, resolve_config
from synthaudit.app.services.listing import ListingParams, tenant_page

log = logging.getLogger(__name__)
Pair = tuple[Comparison, list[ComparisonCheckpoint]]
RESULT_FILES = {"synthaudit": "results.csv", "imageclef": "results-imageclef.csv"}


def location(comparison_id: uuid.UUID) -> str:
    return f"/v1/comparisons/{comparison_id}"


def _checkpoint(base: str, checkpoint: ComparisonCheckpoint) -> CheckpointOut:
    row = checkpoint.row or {}
    return CheckpointOut(
        name=checkpoint.name,
        dataset_id=checkpoint.dataset_id,
        step=row.get("step"),
        verdict=row.get("verdict"),
        leakage_p=row.get("p_value"),
        holm_p=row.get("holm_p"),
        evidence=row.get("evidence"),
        flagged=row.get("n_flagged"),
        used_lower_bound=row.get("used_lower_bound"),
        n_generated=row.get("n_generated"),
        reference_check_p=row.get("check_p"),
        results=f"{base}/checkpoints/{checkpoint.name}/results.csv",
    )


def to_schema(comparison: Comparison, checkpoints: list[ComparisonCheckpoint]) -> ComparisonOut:
    base = location(comparison.id)
    return ComparisonOut(
        id=comparison.id,
        status=comparison.status,  # type: ignore[arg-type]  # the column holds only the schema's literals (written by this code); pydantic checks again
        stage=comparison.stage,
        progress=round(min(max(comparison.progress or 0.0, 0.0), 100.0), 1),
        error=comparison.error,
        real_dataset_id=comparison.real_dataset_id,
        reference_dataset_id=comparison.reference_dataset_id,
        level=comparison.level,
        config=comparison.config,
        checkpoints=[_checkpoint(base, c) for c in checkpoints],
        summary=comparison.summary,
        created_at=comparison.created_at,
        started_at=comparison.started_at,
        finished_at=comparison.finished_at,
        purged_at=comparison.purged_at,
        links=ComparisonLinks(self=base, comparison_csv=f"{base}/comparison.csv", report=f"{base}/report"),
    )


def _checkpoints(
    session: Session, body: ComparisonCreate, tenant: str, max_checkpoints: int
) -> list[tuple[str, uuid.UUID]]:
    """(name, dataset id) of every generated set in checkpoint order; 422 for a set that is not the
    tenant's ready generated dataset, a bad or repeated name, or too many sets."""
    from synthaudit.models.compare import NAME, named_checkpoints

    if len(body.generated) > max_checkpoints:
        raise Unprocessable(
            f"generated: {len(body.generated)} checkpoints, more than the {max_checkpoints} a comparison may "
            "have (MAX_COMPARISON_CHECKPOINTS)",
            extra={"limit": max_checkpoints},
        )
    pairs: list[tuple[str, Path]] = []
    ids: dict[str, uuid.UUID] = {}
    seen: dict[str, int] = {}
    for i, item in enumerate(body.generated):  # names are never echoed back (as no submitted value is)
        dataset = check_dataset(session, f"generated[{i}].dataset_id", item.dataset_id, "generated", tenant)
        name = item.name if item.name is not None else dataset.name or ""
        given = "name" if item.name is not None else "dataset's name (the default name)"
        if not NAME.match(name):
            raise Unprocessable(
                f"generated[{i}]: the {given} is not a checkpoint name (1-128 letters, digits, '.', '_' or "
                "'-', starting with a letter or digit); give the checkpoint a `name`"
            )
        if name in seen:
            raise Unprocessable(f"generated[{i}]: the same checkpoint name as generated[{seen[name]}]")
        seen[name] = i
        pairs.append((name, Path(str(item.dataset_id))))
        ids[name] = item.dataset_id
    return [(c.name, ids[c.name]) for c in named_checkpoints(pairs)]  # checkpoint order


def create_comparison(
    session: Session, dispatcher: Dispatcher, body: ComparisonCreate, *, tenant: str, max_checkpoints: int
) -> ComparisonOut:
    """Queue a comparison of the generated sets against the real set and the reference."""
    from synthaudit.models.compare import DEFAULT_LEVEL

    check_dataset(session, "real_dataset_id", body.real_dataset_id, "real", tenant)
    if body.reference_dataset_id is not None:
        check_dataset(session, "reference_dataset_id", body.reference_dataset_id, "reference", tenant)
    checkpoints = _checkpoints(session, body, tenant, max_checkpoints)
    config = resolve_config(body.config, body.reference_dataset_id is not None, set())
    if body.reference_dataset_id is not None and not body.config.drop_reference_duplicates:
        check_reference_overlap(session, body.real_dataset_id, body.reference_dataset_id)
    comparison = Comparison(
        tenant=tenant,
        real_dataset_id=body.real_dataset_id,
        reference_dataset_id=body.reference_dataset_id,
        config=config,
        level=body.level if body.level is not None else DEFAULT_LEVEL,
        status="queued",
        progress=0.0,
    )
    repo.add_comparison(session, comparison, checkpoints)
    session.commit()  # before the job is queued: the worker reads the row at once
    try:
        dispatcher.submit_comparison(comparison.id)
    except Exception as exc:
        log.error("comparison %s: could not be queued (%s)", comparison.id, type(exc).__name__)
        repo.delete_comparison(session, comparison.id)
        session.commit()  # the error below rolls the request back: the comparison never queued goes now
        raise QueueUnavailable("the job queue cannot be reached; retry the request later") from exc
    log.info("comparison %s: queued (%d checkpoints, %s)", comparison.id, len(checkpoints), dispatcher.mode)
    return to_schema(comparison, repo.comparison_checkpoints(session, comparison.id))


def _owned(session: Session, comparison_id: uuid.UUID, tenant: str) -> Comparison:
    """The tenant's comparison; another tenant's is a 404 too."""
    comparison = repo.get_comparison(session, comparison_id, tenant)
    if comparison is None:
        raise NotFound(f"no comparison {comparison_id}")
    return comparison


def get_comparison(session: Session, comparison_id: uuid.UUID, *, tenant: str) -> ComparisonOut:
    """The tenant's comparison."""
    comparison = _owned(session, comparison_id, tenant)
    return to_schema(comparison, repo.comparison_checkpoints(session, comparison_id))


def list_comparisons(
    session: Session, params: ListingParams, status: str | None = None, *, tenant: str
) -> ComparisonPage:
    """A page of the tenant's comparisons (optionally in one status), newest first."""

    def read(window: repo.Window) -> list[Pair]:
        rows = repo.list_comparisons(session, window, status)
        checkpoints = repo.checkpoints_of(session, [c.id for c in rows])
        return [(c, checkpoints[c.id]) for c in rows]

    return tenant_page(
        ComparisonPage,
        read,
        params,
        tenant,
        lambda pair: (pair[0].created_at, pair[0].id),
        lambda p: to_schema(*p),
    )


def cancel_comparison(session: Session, comparison_id: uuid.UUID, *, tenant: str) -> ComparisonOut:
    """Cancel a queued or running comparison (the running job stops at its next heartbeat)."""
    comparison = _owned(session, comparison_id, tenant)
    if not repo.cancel_comparison(session, comparison_id):
        raise Conflict(
            f"the comparison already {comparison.status}; only queued or running comparisons can be cancelled"
        )
    session.commit()
    session.refresh(comparison)
    log.info("comparison %s: cancelled", comparison_id)
    return to_schema(comparison, repo.comparison_checkpoints(session, comparison_id))


def delete_comparison(session: Session, storage: Storage, comparison_id: uuid.UUID, *, tenant: str) -> None:
    """Delete the comparison's rows and files (a running job stops at its next heartbeat)."""
    _owned(session, comparison_id, tenant)
    repo.delete_comparison(session, comparison_id)
    session.commit()  # before the files go: a failed commit leaves the comparison whole
    storage.remove_comparison(comparison_id)


def _finished(session: Session, comparison_id: uuid.UUID, tenant: str) -> Comparison:
    """The tenant's succeeded comparison whose files are still there (409 before, 410 once purged)."""
    comparison = _owned(session, comparison_id, tenant)
    if comparison.status != "succeeded":
        hint = f": {comparison.error}" if comparison.error else ""
        raise NotReady(f"the comparison is {comparison.status}{hint}; its files exist once it has succeeded")
    if comparison.purged_at is not None:
        raise Gone(
            f"the files of comparison {comparison_id} were purged (retention); its table and summary stay "
            "in GET /v1/comparisons/{id}"
        )
    return comparison


def output_file(
    session: Session, storage: Storage, comparison_id: uuid.UUID, name: str, *, tenant: str
) -> Path:
    """comparison.csv or comparison.html of the tenant's succeeded comparison."""
    _finished(session, comparison_id, tenant)
    return _existing(storage.comparison_dir(comparison_id) / "out" / name)


def checkpoint_results(
    session: Session, storage: Storage, comparison_id: uuid.UUID, name: str, fmt: str, *, tenant: str
) -> Path:
    """A checkpoint's results.csv (the CLI's, or the ImageCLEF `id,label` form); 404 for an unknown name."""
    _finished(session, comparison_id, tenant)
    if name not in {c.name for c in repo.comparison_checkpoints(session, comparison_id)}:
        raise NotFound("the comparison has no checkpoint of that name")
    return _existing(storage.comparison_dir(comparison_id) / "out" / name / RESULT_FILES[fmt])


def _existing(path: Path) -> Path:
    if not path.is_file():
        raise Conflict("the comparison's files are missing from the storage; run the comparison again")
    return path
