"""/v1/audits: start an audit, list them, follow, cancel or delete one, get its results and metrics."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from synthaudit.app.auth import TenantDep
from synthaudit.app.deps import DispatcherDep, SessionDep, SettingsDep, StorageDep
from synthaudit.app.routes.common import problems
from synthaudit.app.routes.listing import ListingDep
from synthaudit.app.schemas import AuditCreate, AuditOut, AuditPage, MetricsOut, ResultsFormat, Status
from synthaudit.app.services import audits as service

router = APIRouter(prefix="/v1/audits", tags=["audits"])


@router.post("", status_code=202, response_model=AuditOut, responses=problems(404, 422, 429, 503))
def create_audit(
    body: AuditCreate,
    response: Response,
    session: SessionDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    tenant: TenantDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=255,
            description="retries with the same key return the same audit",
        ),
    ] = None,
) -> AuditOut:
    """Queue an audit of the real dataset against the generated one; poll the Location."""
    limit = settings.max_active_audits_per_tenant
    audit, created = service.create_audit(
        session, dispatcher, body, idempotency_key, tenant=tenant, max_active=limit
    )
    response.headers["Location"] = service.audit_location(audit.id)
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return audit


@router.get("", response_model=AuditPage, responses=problems(422))
def list_audits(
    session: SessionDep,
    tenant: TenantDep,
    listing: ListingDep,
    status: Annotated[Status | None, Query(description="only audits in this status")] = None,
) -> AuditPage:
    """The tenant's audits, newest first; follow `next_cursor` for the next page."""
    return service.list_audits(session, listing, status, tenant=tenant)


@router.get("/{audit_id}", response_model=AuditOut, responses=problems(404))
def get_audit(audit_id: uuid.UUID, session: SessionDep, tenant: TenantDep) -> AuditOut:
    """Status, current stage, progress (0-100), timestamps and, on failure, the error."""
    return service.get_audit(session, audit_id, tenant=tenant)


@router.get(
    "/{audit_id}/results.csv",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "one row per real image (none per reference)"},
        **problems(404, 409),
    },
)
def get_results(
    audit_id: uuid.UUID,
    session: SessionDep,
    storage: StorageDep,
    tenant: TenantDep,
    format: Annotated[
        ResultsFormat, Query(description="`imageclef`: `id,label` lines, no header")
    ] = "synthaudit",
) -> FileResponse:
    """The decisions: `id,used,score,nearest_generated,similarity,p_value,q_value,role`, one row per real
    image (or the ImageCLEF format); the CLI's results.csv byte for byte."""
    path = service.write_results(session, storage, audit_id, format, tenant=tenant)
    return FileResponse(
        path,
        media_type="text/csv",
        filename=f"audit-{audit_id}-{format}.csv",
        background=BackgroundTask(Path(path).unlink, missing_ok=True),
    )


@router.get("/{audit_id}/metrics", response_model=MetricsOut, responses=problems(404, 409))
def get_metrics(audit_id: uuid.UUID, session: SessionDep, tenant: TenantDep) -> MetricsOut:
    """The CLI's `--metrics` document plus `audit_id`: rule, threshold, calibration (FDR, leakage test,
    power), counts and, with labels, accuracy/precision/recall/specificity/F1/AUC/TPR@1%FPR."""
    return service.get_metrics(session, audit_id, tenant=tenant)


@router.post("/{audit_id}/cancel", response_model=AuditOut, responses=problems(404, 409))
def cancel_audit(
    audit_id: uuid.UUID, session: SessionDep, dispatcher: DispatcherDep, tenant: TenantDep
) -> AuditOut:
    """Cancel a queued or running audit."""
    return service.cancel_audit(session, dispatcher, audit_id, tenant=tenant)


@router.delete("/{audit_id}", status_code=204, responses=problems(404))
def delete_audit(
    audit_id: uuid.UUID,
    session: SessionDep,
    dispatcher: DispatcherDep,
    storage: StorageDep,
    tenant: TenantDep,
) -> Response:
    """Cancel it if still active, then delete its rows, results and work folder."""
    service.delete_audit(session, dispatcher, storage, audit_id, tenant=tenant)
    return Response(status_code=204)
