"""Pseudonymous patient/study/series keys: the tenant's key, and an upload's image rows that carry them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from synthaudit.app.core.config import Settings


def group_secret(tenant: str, settings: Settings | None = None) -> str:
    """The key of a tenant's patient/study/series pseudonyms: HMAC(GROUP_KEY_SECRET, tenant), so that
    pseudonyms differ between tenants (app/core/home.py says where the secret comes from)."""
    from synthaudit.app.core.config import get_settings
    from synthaudit.app.core.home import group_key_secret
    from synthaudit.models.groups import tenant_key

    secret = group_key_secret(settings or get_settings())
    return tenant_key(secret, tenant)


def image_rows(images_dir: Path, images: list[Any], secret: str) -> list[dict[str, Any]]:
    """The `images` rows of an upload, with the pseudonymous patient/study/series keys of DICOM files."""
    from synthaudit.models.groups import keys_from_file

    rows = []
    for image in images:
        keys = keys_from_file(images_dir / image.file_name, secret)
        rows.append(
            {
                "name": image.name,
                "file_name": image.file_name,
                "sha256": image.sha256,
                "size_bytes": image.size_bytes,
                "patient_key": keys.patient if keys else None,
                "study_key": keys.study if keys else None,
                "series_key": keys.series if keys else None,
            }
        )
    return rows
