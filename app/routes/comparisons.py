"""/v1/comparisons: audit several generated sets (checkpoints) against one real set and one reference, as
`synthaudit compare` does; follow, list, cancel or delete a comparison, get its table, report and CSVs."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from synthaudit.app.auth import TenantDep
from synthaudit.app.deps import DispatcherDep, SessionDep, SettingsDep, StorageDep
from synthaudit.app.routes.common import problems
from synthaudit.app.routes.listing import ListingDep
from synthaudit.app.schemas import ResultsFormat
from synthaudit.app.schemas_comparisons import ComparisonCreate, ComparisonOut, ComparisonPage
from synthaudit.app.schemas_workflow import JobStatus
from synthaudit.app.services import comparisons as service

router = APIRouter(prefix="/v1/comparisons", tags=["comparisons"])
PRIVATE = {"Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff"}


@router.post("", status_code=202, response_model=ComparisonOut, responses=problems(422, 503))
def create_comparison(
    body: ComparisonCreate,
    response: Response,
    session: SessionDep,
    dispatcher: DispatcherDep,
    settings: SettingsDep,
    tenant: TenantDep,
) -> ComparisonOut:
    """Queue the comparison (the real and reference images decoded once, each checkpoint audited in full,
    Holm across the series); poll the Location."""
    comparison = service.create_comparison(
        session, dispatcher, body, tenant=tenant, max_checkpoints=settings.max_comparison_checkpoints
    )
    response.headers["Location"] = comparison.links.self
    return comparison


@router.get("", response_model=ComparisonPage, responses=problems(422))
def list_comparisons(
    session: SessionDep,
    tenant: TenantDep,
    listing: ListingDep,
    status: Annotated[JobStatus | None, Query(description="only comparisons in this status")] = None,
) -> ComparisonPage:
    """The tenant's comparisons, newest first; follow `next_cursor` for the next page."""
    return service.list_comparisons(session, listing, status, tenant=tenant)


@router.get("/{comparison_id}", response_model=ComparisonOut, responses=problems(404))
def get_comparison(comparison_id: uuid.UUID, session: SessionDep, tenant: TenantDep) -> ComparisonOut:
    """Status, progress (0-100) and step, and once succeeded each checkpoint's line and the summary."""
    return service.get_comparison(session, comparison_id, tenant=tenant)


@router.get(
    "/{comparison_id}/comparison.csv",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "one row per checkpoint"},
        **problems(404, 409, 410),
    },
)
def get_comparison_csv(
    comparison_id: uuid.UUID, session: SessionDep, storage: StorageDep, tenant: TenantDep
) -> FileResponse:
    """`checkpoint,step,verdict,leakage_p,holm_p,evidence_after_holm,flagged,used_lower_bound,n_generated,
    reference_check_p` in checkpoint order: the CLI's comparison.csv byte for byte."""
    path = service.output_file(session, storage, comparison_id, "comparison.csv", tenant=tenant)
    return FileResponse(
        path, media_type="text/csv", filename=f"comparison-{comparison_id}.csv", headers=PRIVATE
    )


@router.get(
    "/{comparison_id}/report",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/html": {}}, "description": "a self-contained HTML page"},
        **problems(404, 409, 410),
    },
)
def get_report(
    comparison_id: uuid.UUID, session: SessionDep, storage: StorageDep, tenant: TenantDep
) -> FileResponse:
    """The comparison page: the summary, the table and the leakage plot (the CLI's comparison.html)."""
    path = service.output_file(session, storage, comparison_id, "comparison.html", tenant=tenant)
    return FileResponse(path, media_type="text/html; charset=utf-8", headers=PRIVATE)


@router.get(
    "/{comparison_id}/checkpoints/{name}/results.csv",
    response_class=FileResponse,
    responses={
        200: {"content": {"text/csv": {}}, "description": "one row per real image"},
        **problems(404, 409, 410),
    },
)
def get_checkpoint_results(
    comparison_id: uuid.UUID,
    name: str,
    session: SessionDep,
    storage: StorageDep,
    tenant: TenantDep,
    format: Annotated[
        ResultsFormat, Query(description="`imageclef`: `id,label` lines, no header")
    ] = "synthaudit",
) -> FileResponse:
    """One checkpoint's decisions, as a separate audit's results.csv (or the ImageCLEF format)."""
    path = service.checkpoint_results(session, storage, comparison_id, name, format, tenant=tenant)
    return FileResponse(
        path,
        media_type="text/csv",
        filename=f"comparison-{comparison_id}-{name}-{format}.csv",
        headers=PRIVATE,
    )


@router.post("/{comparison_id}/cancel", response_model=ComparisonOut, responses=problems(404, 409))
def cancel_comparison(comparison_id: uuid.UUID, session: SessionDep, tenant: TenantDep) -> ComparisonOut:
    """Cancel a queued or running comparison (a running job stops at its next heartbeat)."""
    return service.cancel_comparison(session, comparison_id, tenant=tenant)


@router.delete("/{comparison_id}", status_code=204, responses=problems(404))
def delete_comparison(
    comparison_id: uuid.UUID, session: SessionDep, storage: StorageDep, tenant: TenantDep
) -> Response:
    """Cancel it if still active, then delete its rows and files."""
    service.delete_comparison(session, storage, comparison_id, tenant=tenant)
    return Response(status_code=204)
