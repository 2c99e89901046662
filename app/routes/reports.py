"""/v1/audits/{id}/report (HTML: verdict, score plots, ROC, gallery) and /patients.csv (per-patient results)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query
from fastapi.responses import FileResponse
from starlette.background import BackgroundTask

from synthaudit.app.auth import TenantDep
from synthaudit.app.deps import SessionDep, StorageDep
from synthaudit.app.routes.common import problems
from synthaudit.app.services import reports as service

router = APIRouter(prefix="/v1/audits", tags=["reports"])
Aggregation = Literal["any", "mean-score"]


@router.get(
    "/{audit_id}/report",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "a self-contained HTML page (inline images)"},
        **problems(404, 409, 422),
    },
)
def get_report(
    audit_id: uuid.UUID,
    session: SessionDep,
    storage: StorageDep,
    tenant: TenantDep,
    aggregation: Annotated[
        Aggregation | None, Query(description="patient rule: `any` image used, or `mean-score`")
    ] = None,
) -> FileResponse:
    """The report of a succeeded audit; it embeds thumbnails of the audited images (confidential)."""
    path = service.audit_report(session, storage, audit_id, aggregation, tenant=tenant)
    return FileResponse(
        path,
        media_type="text/html; charset=utf-8",
        headers={"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"},
    )


@router.get(
    "/{audit_id}/patients.csv",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "one row per patient (pseudonymous key)"},
        **problems(404, 409, 422),
    },
)
def get_patients(
    audit_id: uuid.UUID,
    session: SessionDep,
    storage: StorageDep,
    tenant: TenantDep,
    aggregation: Annotated[
        Aggregation | None, Query(description="`any` image used (default: the audit's rule), or `mean-score`")
    ] = None,
) -> FileResponse:
    """Per-patient decisions: `patient,images,images_used,used,score,max_score,mean_score,studies,series`."""
    from synthaudit.app.services.patients import write_patients

    path = write_patients(session, storage, audit_id, aggregation, tenant=tenant)
    return FileResponse(
        path,
        media_type="text/csv",
        filename=f"audit-{audit_id}-patients.csv",
        background=BackgroundTask(Path(path).unlink, missing_ok=True),
    )
