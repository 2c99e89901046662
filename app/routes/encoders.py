"""/v1/encoders: pretrain a reusable MAE encoder once, list and inspect encoders, download or delete one."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response
from fastapi.responses import FileResponse

from synthaudit.app.auth import TenantDep
from synthaudit.app.deps import DispatcherDep, SessionDep, StorageDep
from synthaudit.app.routes.common import problems
from synthaudit.app.routes.listing import ListingDep
from synthaudit.app.schemas_workflow import EncoderCreate, EncoderOut, EncoderPage, JobStatus
from synthaudit.app.services import encoders as service

router = APIRouter(prefix="/v1/encoders", tags=["encoders"])


@router.post("", status_code=202, response_model=EncoderOut, responses=problems(422, 503))
def create_encoder(
    body: EncoderCreate, response: Response, session: SessionDep, dispatcher: DispatcherDep, tenant: TenantDep
) -> EncoderOut:
    """Queue MAE pretraining on the datasets' images; audits reuse it with `encoder_id`."""
    encoder = service.create_encoder(session, dispatcher, body, tenant=tenant)
    response.headers["Location"] = encoder.links.self
    return encoder


@router.get("", response_model=EncoderPage, responses=problems(422))
def list_encoders(
    session: SessionDep,
    tenant: TenantDep,
    listing: ListingDep,
    status: Annotated[JobStatus | None, Query(description="only encoders in this status")] = None,
) -> EncoderPage:
    """The tenant's encoders, newest first; follow `next_cursor` for the next page."""
    return service.list_encoders(session, listing, status, tenant=tenant)


@router.get("/{encoder_id}", response_model=EncoderOut, responses=problems(404))
def get_encoder(encoder_id: uuid.UUID, session: SessionDep, tenant: TenantDep) -> EncoderOut:
    """Status, progress and, once trained, the training data hash and final loss."""
    return service.get_encoder(session, encoder_id, tenant=tenant)


@router.get(
    "/{encoder_id}/weights",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {}}}, **problems(404, 409, 410)},
)
def get_weights(
    encoder_id: uuid.UUID, session: SessionDep, storage: StorageDep, tenant: TenantDep
) -> FileResponse:
    """The safetensors file (`synthaudit audit --checkpoint FILE` reuses it locally); 410 once retention
    has purged it."""
    path = service.weights_file(session, storage, encoder_id, tenant=tenant)
    return FileResponse(
        path, media_type="application/octet-stream", filename=f"encoder-{encoder_id}.safetensors"
    )


@router.delete("/{encoder_id}", status_code=204, responses=problems(404, 409))
def delete_encoder(
    encoder_id: uuid.UUID, session: SessionDep, storage: StorageDep, tenant: TenantDep
) -> Response:
    """Delete the encoder and its weights (409 while a queued or running audit uses it)."""
    service.delete_encoder(session, storage, encoder_id, tenant=tenant)
    return Response(status_code=204)
