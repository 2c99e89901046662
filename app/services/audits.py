"""Audits: create (validated, idempotent), read, cancel, delete, and their results and metrics."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from synthaudit.app.core import repository as repo
from synthaudit.app.core.db import make_session_factory
from synthaudit.app.core.jobs import Dispatcher
from synthaudit.app.core.storage import Storage
from synthaudit.app.core.tables import ACTIVE_STATUSES, Audit, AuditResult, Dataset
from synthaudit.app.core.webhooks import notify_finished
from synthaudit.app.problems import Conflict, NotReady, ProblemError, QueueUnavailable, Unprocessable
from synthaudit.app.schemas import AuditConfigIn, AuditCreate, AuditLinks, AuditOut, AuditPage, MetricsOut
from synthaudit.app.services.audit_access import finished_audit, owned_audit
from synthaudit.app.services.listing import ListingParams, tenant_page
from synthaudit.app.services.workflow import audit_fields, audit_trail

if TYPE_CHECKING:
    from synthaudit.models.results import ResultRow

log = logging.getLogger(__name__)


class TooManyActiveAudits(ProblemError):
    status, slug = 429, "too-many-active-audits"


_SLOT_LOCK = threading.Lock()  # one process: count and insert as one step (Postgres: an advisory lock too)


@contextmanager
def _tenant_slot(session: Session, tenant: str, max_active: int) -> Iterator[None]:
    """Hold the tenant's audit-creation lock while the caller inserts and commits its audit; refuse when
    the tenant already has `max_active` queued or running audits (0: no limit)."""
    if max_active <= 0:
        yield
        return
    with _SLOT_LOCK:
        repo.lock_audit_creation(session, tenant)  # Postgres: API processes serialise per tenant
        active = repo.count_active_audits(session, tenant)
        if active >= max_active:
            raise TooManyActiveAudits(
                f"this tenant already has {active} queued or running audits, the most it may have at once "
                "(MAX_ACTIVE_AUDITS_PER_TENANT); wait for one to finish, or cancel one",
                extra={"active": active, "limit": max_active},
                headers={"Retry-After": "60"},
            )
        yield


def audit_location(audit_id: uuid.UUID) -> str:
    return f"/v1/audits/{audit_id}"


def to_schema(audit: Audit) -> AuditOut:
    base = audit_location(audit.id)
    return AuditOut(
        id=audit.id,
        status=audit.status,  # type: ignore[arg-type]  # the column holds only the schema's literals (written by this code); pydantic checks again
        stage=audit.stage,
        progress=round(min(max(audit.progress or 0.0, 0.0), 100.0), 1),
        error=audit.error,
        real_dataset_id=audit.real_dataset_id,
        generated_dataset_id=audit.generated_dataset_id,
        reference_dataset_id=audit.reference_dataset_id,
        config=audit.config,
        labelled_images=len(audit.labels or {}),
        stage_timings=audit.stage_timings or {},
        created_at=audit.created_at,
        started_at=audit.started_at,
        finished_at=audit.finished_at,
        links=AuditLinks(
            self=base,
            results=f"{base}/results.csv",
            metrics=f"{base}/metrics",
            report=f"{base}/report",
            patients=f"{base}/patients.csv",
        ),
        encoder_id=audit.encoder_id,
        webhook_status=audit.webhook_status,
        patient_aggregation=audit.patient_aggregation or "any",
        labelled_patients=len(audit.patient_labels or {}),
        trail=audit_trail(audit),
    )


def _request_hash(body: AuditCreate) -> str:
    """Hash of what the client asked for: fields left at their defaults are left out, so adding an
    optional field to the API does not change the hash of requests that do not use it."""
    chosen = body.model_dump(mode="json", exclude_defaults=True)
    canonical = json.dumps(chosen, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# Encoders that need no server-side weight files (the API does not accept weights or checkpoints).
API_ENCODERS = ("mae", "pixels", "pixels_whitened", "vit_tokens_whitened")


def _resolve_config(body: AuditCreate) -> dict[str, Any]:
    """The full engine config of an audit request."""
    return resolve_config(body.config, body.reference_dataset_id is not None, _label_values(body))


def resolve_config(chosen: AuditConfigIn, has_reference: bool, label_values: set[int]) -> dict[str, Any]:
    """The full engine config: engine defaults overridden by the client's choices, validated against what
    the request gives (a reference set; labels of which kinds). Audits and comparisons share it."""
    from synthaudit.models.config import AuditConfig
    from synthaudit.models.methods import get_method

    try:
        config = AuditConfig.from_dict({**AuditConfig().to_dict(), **chosen.chosen()})
        views = get_method(config.method).views(config)
    except (TypeError, ValueError) as exc:
        raise Unprocessable(f"config: {exc}") from exc
    for view in views:
        if view.encoder not in API_ENCODERS:
            raise Unprocessable(
                f"config: encoder {view.encoder!r} is not available through the API "
                f"(it needs weight files on the server); choose one of {', '.join(API_ENCODERS)}"
            )
    if config.decision == "calibrated" and len(label_values) < 2:
        raise Unprocessable(
            "config: decision 'calibrated' needs labels with both used (1) and not used (0) images"
        )
    if config.decision == "fdr" and not has_reference and 0 not in label_values:
        raise Unprocessable(
            "config: decision 'fdr' needs images known not to be used: labels with used=0 "
            "(or patient_labels with 0), or a reference_dataset_id"
        )
    return config.to_dict()


def _label_values(body: AuditCreate) -> set[int]:
    """The kinds of labels a request gives (1 used, 0 not used), per image or per patient."""
    return {*(body.labels or {}).values(), *(body.patient_labels or {}).values()}


DATASET_FIELDS = (
    ("real_dataset_id", "real"),
    ("generated_dataset_id", "generated"),
    ("reference_dataset_id", "reference"),
)


def check_dataset(session: Session, field: str, dataset_id: uuid.UUID, wanted: str, tenant: str) -> Dataset:
    """The tenant's dataset; 422 unless it exists for this tenant, still has its images and has the wanted
    role."""
    dataset = repo.get_dataset(session, dataset_id, tenant)
    if dataset is None:
        raise Unprocessable(f"{field}: no dataset {dataset_id}")
    if dataset.purged_at is not None:
        raise Unprocessable(f"{field}: the images of dataset {dataset_id} were purged (retention)")
    if dataset.role != wanted:
        raise Unprocessable(
            f"{field}: dataset {dataset_id} was uploaded with role {dataset.role!r}, not {wanted!r}"
        )
    return dataset


def _check_datasets(session: Session, body: AuditCreate, tenant: str) -> None:
    for field, wanted in DATASET_FIELDS:
        dataset_id = getattr(body, field)
        if dataset_id is not None:
            check_dataset(session, field, dataset_id, wanted, tenant)
    if body.labels:
        unknown = sorted(set(body.labels) - repo.image_names(session, body.real_dataset_id))
        if unknown:
            shown = ", ".join(unknown[:10]) + (
                f" (and {len(unknown) - 10} more)" if len(unknown) > 10 else ""
            )
            raise Unprocessable(f"labels: not among the real dataset's image ids: {shown}")
    if body.reference_dataset_id is not None and not body.config.drop_reference_duplicates:
        check_reference_overlap(session, body.real_dataset_id, body.reference_dataset_id)


def check_reference_overlap(session: Session, real_id: uuid.UUID, reference_id: uuid.UUID) -> None:
    """422 when real images have the same bytes as reference images (the decode stage also finds the same
    pixels and near-identical copies, and fails the audit with the same kind of message)."""
    reference = {sha for _, sha in repo.image_hashes(session, reference_id)}
    repeated = [name for name, sha in repo.image_hashes(session, real_id) if sha in reference]
    if repeated:
        shown = ", ".join(repeated[:5]) + (f" (and {len(repeated) - 5} more)" if len(repeated) > 5 else "")
        raise Unprocessable(
            f"reference_dataset_id: {len(repeated)} real candidate image(s) are also in the reference (same "
            f"file bytes): {shown}; a reference image must not be a candidate: remove them from one of the "
            "datasets, or set config drop_reference_duplicates to drop them from the candidates"
        )


def create_audit(
    session: Session,
    dispatcher: Dispatcher,
    body: AuditCreate,
    idempotency_key: str | None,
    *,
    tenant: str,
    max_active: int = 0,
) -> tuple[AuditOut, bool]:
    """Queue an audit; with an Idempotency-Key a repeated request returns the first audit (created=False).
    A new audit is refused (429) while the tenant has `max_active` queued or running ones (0: no limit)."""
    request_hash = _request_hash(body)
    if idempotency_key:
        existing = _existing(session, idempotency_key, request_hash, tenant)
        if existing is not None:
            return existing, False
    _check_datasets(session, body, tenant)
    audit = Audit(
        tenant=tenant,
        real_dataset_id=body.real_dataset_id,
        generated_dataset_id=body.generated_dataset_id,
        reference_dataset_id=body.reference_dataset_id,
        **audit_fields(session, body, _resolve_config(body), tenant),  # config, labels, workflow choices
        status="queued",
        progress=0.0,
        stage_timings={},
        idempotency_key=idempotency_key,
        request_hash=request_hash,
    )
    try:
        with _tenant_slot(session, tenant, max_active):
            repo.add_audit(session, audit)
            # Committed here, not at the end of the request: inside the tenant's slot (its count and lock
            # end with this transaction), before the job is queued (the worker reads the row at once), and
            # a concurrent request with the same Idempotency-Key shows up as the IntegrityError below.
            session.commit()
    except IntegrityError:  # a concurrent request with the same key won
        session.rollback()
        if idempotency_key and (existing := _existing(session, idempotency_key, request_hash, tenant)):
            return existing, False
        raise
    try:
        dispatcher.submit(audit.id)
    except Exception as exc:
        log.error("audit %s: could not be queued (%s)", audit.id, type(exc).__name__)
        repo.delete_audit(session, audit.id)
        session.commit()  # the error below rolls the request back: the audit that was never queued goes now
        raise QueueUnavailable("the job queue cannot be reached; retry the request later") from exc
    log.info("audit %s: queued (%s)", audit.id, dispatcher.mode)
    return with_webhook_secret(audit), True


def with_webhook_secret(audit: Audit) -> AuditOut:
    """The audit as created: the only answer that shows its webhook's signing secret."""
    return to_schema(audit).model_copy(update={"webhook_secret": audit.webhook_secret})


def _existing(session: Session, key: str, request_hash: str, tenant: str) -> AuditOut | None:
    audit = repo.get_audit_by_idempotency_key(session, key, tenant)
    if audit is None:
        return None
    if audit.request_hash != request_hash:
        raise Unprocessable("this Idempotency-Key was already used with a different request body")
    return with_webhook_secret(audit)  # the repeat of a lost answer must carry the secret too


def get_audit(session: Session, audit_id: uuid.UUID, *, tenant: str) -> AuditOut:
    """The tenant's audit."""
    return to_schema(owned_audit(session, audit_id, tenant))


def list_audits(
    session: Session, params: ListingParams, status: str | None = None, *, tenant: str
) -> AuditPage:
    """A page of the tenant's audits (optionally in one status), newest first."""
    return tenant_page(
        AuditPage,
        lambda window: repo.list_audits(session, window, status),
        params,
        tenant,
        lambda audit: (audit.created_at, audit.id),
        to_schema,
    )


def cancel_audit(session: Session, dispatcher: Dispatcher, audit_id: uuid.UUID, *, tenant: str) -> AuditOut:
    """Cancel a queued or running audit (a running stage stops at its next progress report)."""
    audit = owned_audit(session, audit_id, tenant)
    if audit.status not in ACTIVE_STATUSES:
        raise Conflict(f"the audit already {audit.status}; only queued or running audits can be cancelled")
    repo.cancel_audit(session, audit_id)
    # Committed before the runner is told and the webhook claimed: both read the cancelled row from
    # their own sessions (the claim only takes an audit in a final status).
    session.commit()
    dispatcher.cancel(audit_id)
    notify_finished(make_session_factory(session.get_bind()), audit_id)  # its webhook, if any
    repo.reread_audit(session, audit)
    return to_schema(audit)


def delete_audit(
    session: Session, dispatcher: Dispatcher, storage: Storage, audit_id: uuid.UUID, *, tenant: str
) -> None:
    """Cancel if still active, then delete the rows and the work folder."""
    audit = owned_audit(session, audit_id, tenant)
    was_active = audit.status in ACTIVE_STATUSES
    repo.delete_audit(session, audit_id)
    # Committed before the runner is told (a running stage stops once it sees the row gone) and before
    # the files go (a failed commit leaves the audit whole, never rows without their folder).
    session.commit()
    if was_active:
        dispatcher.cancel(audit_id)
    storage.remove_audit(audit_id)


def write_results(session: Session, storage: Storage, audit_id: uuid.UUID, fmt: str, *, tenant: str) -> Path:
    """The results CSV (synthaudit or imageclef format) in a temporary file the caller deletes: the rows
    of the real images only (the reference set's images are never in it)."""
    from synthaudit.models.results import write_results_csv

    finished_audit(session, audit_id, tenant)
    rows = [result_row(r) for r in repo.get_results(session, audit_id, source="real")]
    storage.ensure()
    fd, name = tempfile.mkstemp(dir=storage.root / "tmp", prefix="results-", suffix=".csv")
    os.close(fd)
    path = Path(name)
    try:
        write_results_csv(rows, path, fmt=fmt)
    except ValueError as exc:
        path.unlink(missing_ok=True)
        raise Conflict(str(exc)) from exc
    return path


def result_row(r: AuditResult) -> ResultRow:
    """A stored result row as the engine's ResultRow (closest generated image as the evidence)."""
    from synthaudit.models.results import ResultRow

    return ResultRow(
        id=r.image_name,
        used=r.used,
        score=r.score,
        nearest_generated=r.nearest_generated[0] if r.nearest_generated else "",
        similarity=_float(r.similarities[0] if r.similarities else None),
        p_value=r.p_value,
        q_value=r.q_value,
        role=r.role or "candidate",
    )


def _float(value: float | None) -> float:
    return float("nan") if value is None else float(value)


def get_metrics(session: Session, audit_id: uuid.UUID, *, tenant: str) -> MetricsOut:
    """The metrics document of the CLI's `--metrics` file, rebuilt from the decide stage's summary."""
    from synthaudit.models.summary import metrics_document

    finished_audit(session, audit_id, tenant)
    row = repo.get_metrics(session, audit_id)
    if row is None:
        raise NotReady("the audit has no metrics")
    summary = {"threshold": row.threshold, "decision_rule": row.decision_rule, **(row.metrics or {})}
    return MetricsOut(audit_id=audit_id, **metrics_document(summary, row.rejected or {}))
