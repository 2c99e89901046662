"""/v1/datasets: upload an image set, list them, read one, list its images, delete it."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile

from synthaudit.app.auth import TenantDep
from synthaudit.app.deps import SessionDep, SettingsDep, StorageDep
from synthaudit.app.routes.common import MAX_OFFSET, problems
from synthaudit.app.routes.listing import ListingDep
from synthaudit.app.schemas import DatasetOut, DatasetPage, ImagePage, Role
from synthaudit.app.services import datasets as service

router = APIRouter(prefix="/v1/datasets", tags=["datasets"])


@router.post("", status_code=201, response_model=DatasetOut, responses=problems(400, 413, 422))
def create_dataset(
    response: Response,
    session: SessionDep,
    storage: StorageDep,
    settings: SettingsDep,
    tenant: TenantDep,
    role: Annotated[
        Role,
        Form(
            description="`real` (the images to audit), `generated`, or `reference` (real images known NOT "
            "to be in the training set: the reference of a calibrated verdict)"
        ),
    ],
    files: Annotated[
        list[UploadFile],
        File(
            description="images (PNG, JPEG, TIFF, BMP, DICOM, NIfTI .nii/.nii.gz) and/or .zip/.tar/.tar.gz archives"
        ),
    ],
    name: Annotated[
        str | None,
        Form(max_length=200, pattern=r"^[^\x00-\x1f\x7f]*$", description="an optional label for the set"),
    ] = None,
) -> DatasetOut:
    """Upload images and/or archives as one dataset; unreadable files are listed in `rejected`."""
    dataset = service.create_dataset(
        session, storage, settings, role, name, ((f.filename or "", f.file) for f in files), tenant=tenant
    )
    response.headers["Location"] = f"/v1/datasets/{dataset.id}"
    return dataset


@router.get("", response_model=DatasetPage, responses=problems(422))
def list_datasets(
    session: SessionDep,
    tenant: TenantDep,
    listing: ListingDep,
    role: Annotated[Role | None, Query(description="only datasets of this role")] = None,
) -> DatasetPage:
    """The tenant's datasets, newest first (`rejected` left empty: see `rejected_count`); follow
    `next_cursor` for the next page."""
    return service.list_datasets(session, listing, role, tenant=tenant)


@router.get("/{dataset_id}", response_model=DatasetOut, responses=problems(404))
def get_dataset(dataset_id: uuid.UUID, session: SessionDep, tenant: TenantDep) -> DatasetOut:
    """A dataset's role, image count and rejected files."""
    return service.get_dataset(session, dataset_id, tenant=tenant)


@router.get("/{dataset_id}/images", response_model=ImagePage, responses=problems(404))
def list_images(
    dataset_id: uuid.UUID,
    session: SessionDep,
    tenant: TenantDep,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description=f"0-{MAX_OFFSET}")] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ImagePage:
    """The dataset's image ids (the ids results and labels use), ordered."""
    return service.list_images(session, dataset_id, offset, limit, tenant=tenant)


@router.delete("/{dataset_id}", status_code=204, responses=problems(404, 409))
def delete_dataset(
    dataset_id: uuid.UUID, session: SessionDep, storage: StorageDep, tenant: TenantDep
) -> Response:
    """Delete the dataset's files and rows (refused while a queued or running audit uses it)."""
    service.delete_dataset(session, storage, dataset_id, tenant=tenant)
    return Response(status_code=204)
