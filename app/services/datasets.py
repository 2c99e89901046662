"""Datasets: create from an upload, read, list images, delete (rows and files)."""

from __future__ import annotations

import logging
import shutil
import uuid
from collections.abc import Iterable
from typing import BinaryIO

from sqlalchemy.orm import Session

from synthaudit.app.core import repository as repo
from synthaudit.app.core.config import Settings
from synthaudit.app.core.storage import Storage
from synthaudit.app.core.tables import Dataset
from synthaudit.app.problems import Conflict, NotFound, ProblemError, Unprocessable
from synthaudit.app.schemas import DatasetOut, DatasetPage, ImageOut, ImagePage, RejectedFile
from synthaudit.app.services.ingest import NoImagesError, UploadLimits, ingest_uploads
from synthaudit.app.services.listing import ListingParams, tenant_page
from synthaudit.app.services.pseudonyms import group_secret, image_rows

log = logging.getLogger(__name__)


class StorageQuotaExceeded(ProblemError):
    """The upload would take the tenant past TENANT_STORAGE_QUOTA_BYTES (a 4xx: the client can act)."""

    status, slug = 413, "storage-quota-exceeded"


def _check_quota(session: Session, settings: Settings, tenant: str, adding: int) -> None:
    """Refuse when the tenant's stored images plus `adding` bytes exceed its quota (0: no quota).

    Checked before the upload is staged and again with its size before anything is stored, so a refused
    upload stores nothing and changes nothing already stored.
    """
    quota = settings.tenant_storage_quota_bytes
    if not quota:
        return
    used = repo.tenant_stored_bytes(session, tenant)
    if used + adding <= quota and used < quota:
        return
    what = (
        f"the tenant's stored images ({used} bytes) already reach"
        if not adding
        else f"this upload's {adding} bytes of images would take the tenant's {used} stored bytes past"
    )
    raise StorageQuotaExceeded(
        f"{what} its storage quota of {quota} bytes (TENANT_STORAGE_QUOTA_BYTES); "
        "delete datasets it no longer needs",
        extra={"quota_bytes": quota, "used_bytes": used},
    )


def to_schema(dataset: Dataset, rejected_count: int | None = None) -> DatasetOut:
    """The dataset with its rejected files; with `rejected_count` (listings, where the rejected list
    is not read) only their number."""
    rejected = [] if rejected_count is not None else [RejectedFile(**r) for r in dataset.rejected or []]
    return DatasetOut(
        id=dataset.id,
        role=dataset.role,  # type: ignore[arg-type]  # the column holds only the schema's literals (written by this code); pydantic checks again
        name=dataset.name,
        image_count=dataset.image_count,
        total_bytes=dataset.total_bytes,
        rejected=rejected,
        rejected_count=len(rejected) if rejected_count is None else rejected_count,
        created_at=dataset.created_at,
        purged_at=dataset.purged_at,
    )


def create_dataset(
    session: Session,
    storage: Storage,
    settings: Settings,
    role: str,
    name: str | None,
    uploads: Iterable[tuple[str, BinaryIO]],
    *,
    tenant: str,
) -> DatasetOut:
    """Stage and validate the uploaded files, then publish the folder and commit the rows."""
    limits = UploadLimits(
        settings.max_image_bytes,
        settings.max_archive_members,
        settings.max_extracted_bytes,
        max_image_pixels=settings.max_image_pixels,
    )
    storage.ensure()
    staging = storage.new_staging_dir()
    dataset_id = uuid.uuid4()
    try:
        _check_quota(session, settings, tenant, 0)
        try:
            result = ingest_uploads(uploads, staging, limits)
        except NoImagesError as exc:
            raise Unprocessable(str(exc), extra={"rejected": exc.rejected}) from exc
        _check_quota(session, settings, tenant, result.total_bytes)
        dataset = Dataset(
            id=dataset_id,
            role=role,
            name=name,
            image_count=len(result.images),
            total_bytes=result.total_bytes,
            rejected=result.rejected,
            tenant=tenant,
        )
        repo.add_dataset(
            session,
            dataset,
            image_rows(result.images_dir, result.images, group_secret(tenant, settings)),  # + DICOM keys
        )
        storage.publish_dataset(result.images_dir, dataset_id)
        try:
            # Committed here, not at the end of the request: a failed commit must take the published
            # folder away again (no files without their rows).
            session.commit()
        except Exception:
            storage.remove_dataset(dataset_id)
            raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info(
        "dataset %s: %d images stored, %d files rejected",
        dataset_id,
        dataset.image_count,
        len(result.rejected),
    )
    return to_schema(dataset)


def get_dataset(session: Session, dataset_id: uuid.UUID, *, tenant: str) -> DatasetOut:
    """The tenant's dataset; another tenant's is a 404 too."""
    dataset = repo.get_dataset(session, dataset_id, tenant)
    if dataset is None:
        raise NotFound(f"no dataset {dataset_id}")
    return to_schema(dataset)


def list_datasets(
    session: Session, params: ListingParams, role: str | None = None, *, tenant: str
) -> DatasetPage:
    """A page of the tenant's datasets (optionally of one role), newest first."""
    return tenant_page(
        DatasetPage,
        lambda window: repo.list_datasets(session, window, role),
        params,
        tenant,
        lambda row: (row[0].created_at, row[0].id),
        lambda row: to_schema(*row),
    )


def list_images(
    session: Session, dataset_id: uuid.UUID, offset: int, limit: int, *, tenant: str
) -> ImagePage:
    """A page of the dataset's image ids, hashes and sizes."""
    dataset = get_dataset(session, dataset_id, tenant=tenant)
    items = [
        ImageOut(id=image.name, file_name=image.file_name, sha256=image.sha256, size_bytes=image.size_bytes)
        for image in repo.list_images(session, dataset_id, offset, limit)
    ]
    return ImagePage(items=items, offset=offset, limit=limit, total=dataset.image_count)


def delete_dataset(session: Session, storage: Storage, dataset_id: uuid.UUID, *, tenant: str) -> None:
    """Delete rows and files, and the work folders of audits that read it (they hold decoded copies of
    its images; their results stay); refused while a queued or running audit or comparison uses it."""
    get_dataset(session, dataset_id, tenant=tenant)
    active = repo.count_active_audits_using(session, dataset_id)
    if active:
        raise Conflict(f"{active} queued or running audit(s) use this dataset: cancel them first")
    comparing = repo.count_active_comparisons_using(session, dataset_id)
    if comparing:
        raise Conflict(f"{comparing} queued or running comparison(s) use this dataset: cancel them first")
    derived = repo.audits_using(session, dataset_id)
    for audit_id in derived:
        repo.mark_audit_purged(session, audit_id)
    repo.delete_dataset(session, dataset_id)
    session.commit()  # before the files go: a failed commit leaves the dataset whole (no rows without files)
    storage.remove_dataset(dataset_id)
    for audit_id in derived:
        storage.remove_audit(audit_id)
