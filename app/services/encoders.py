"""Reusable encoders: register a pretraining job, follow it, reuse the result in audits, delete it.

The weights live at STORAGE_DIR/encoders/<id>.safetensors (written by worker/encoder_jobs.py). An audit
that names `encoder_id` gets `checkpoint: "encoder:<id>"` in its config; the worker resolves that to the
file (`resolve_checkpoint`), so no server path is stored or shown, and its pretrain stage is skipped.
"""

from __future__ import annotations

import logging
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from synthaudit.app.core import repository as repo
from synthaudit.app.core.encoder_refs import CHECKPOINT_REF
from synthaudit.app.core.jobs import Dispatcher
from synthaudit.app.core.storage import Storage
from synthaudit.app.core.tables import Encoder
from synthaudit.app.problems import Conflict, Gone, NotFound, NotReady, QueueUnavailable, Unprocessable
from synthaudit.app.schemas_workflow import EncoderCreate, EncoderLinks, EncoderOut, EncoderPage
from synthaudit.app.services.listing import ListingParams, tenant_page

log = logging.getLogger(__name__)
_PURGED = "the weights of encoder {encoder_id} were purged (retention); register a new encoder"


def to_schema(encoder: Encoder) -> EncoderOut:
    base = f"/v1/encoders/{encoder.id}"
    return EncoderOut(
        id=encoder.id,
        name=encoder.name,
        status=encoder.status,  # type: ignore[arg-type]  # the column holds only the schema's literals (written by this code); pydantic checks again
        progress=round(min(max(encoder.progress or 0.0, 0.0), 100.0), 1),
        error=encoder.error,
        dataset_ids=[uuid.UUID(d) for d in encoder.dataset_ids],
        config=encoder.config,
        data_hash=encoder.data_hash,
        n_images=encoder.n_images,
        final_loss=encoder.final_loss,
        created_at=encoder.created_at,
        started_at=encoder.started_at,
        finished_at=encoder.finished_at,
        purged_at=encoder.purged_at,
        links=EncoderLinks(self=base, weights=f"{base}/weights"),
    )


def _resolve_spec(body: EncoderCreate) -> dict[str, Any]:
    from synthaudit.models.mae import MAE_PRESETS
    from synthaudit.models.pretrained import EncoderSpec

    spec = {**EncoderSpec().to_dict(), **body.config.chosen()}
    spec.pop("device", None)  # a server-side choice
    if spec["mae_preset"] not in MAE_PRESETS:
        raise Unprocessable(
            f"config: unknown mae_preset {spec['mae_preset']!r}; choose one of {', '.join(sorted(MAE_PRESETS))}"
        )
    return spec


def create_encoder(
    session: Session, dispatcher: Dispatcher, body: EncoderCreate, *, tenant: str
) -> EncoderOut:
    """Queue the pretraining of an encoder on the datasets' images."""
    sources = body.sources()
    for dataset_id in sources:
        dataset = repo.get_dataset(session, dataset_id, tenant)
        if dataset is None:
            raise Unprocessable(f"dataset_ids: no dataset {dataset_id}")
        if getattr(dataset, "purged_at", None) is not None:
            raise Unprocessable(f"dataset_ids: the images of dataset {dataset_id} were purged (retention)")
    encoder = Encoder(
        tenant=tenant,
        name=body.name,
        dataset_ids=[str(d) for d in sources],
        config=_resolve_spec(body),
        status="queued",
        progress=0.0,
    )
    repo.add_encoder(session, encoder)
    session.commit()  # before the job is queued: the worker reads the row at once
    try:
        dispatcher.submit_encoder(encoder.id)
    except Exception as exc:
        log.error("encoder %s: could not be queued (%s)", encoder.id, type(exc).__name__)
        repo.delete_encoder(session, encoder)
        session.commit()  # the error below rolls the request back: the encoder never queued goes now
        raise QueueUnavailable("the job queue cannot be reached; retry the request later") from exc
    log.info("encoder %s: queued (%s)", encoder.id, dispatcher.mode)
    return to_schema(encoder)


def _get(session: Session, encoder_id: uuid.UUID, tenant: str) -> Encoder:
    """The tenant's encoder; another tenant's is a 404 too."""
    encoder = repo.get_encoder(session, encoder_id, tenant)
    if encoder is None:
        raise NotFound(f"no encoder {encoder_id}")
    return encoder


def get_encoder(session: Session, encoder_id: uuid.UUID, *, tenant: str) -> EncoderOut:
    """The tenant's encoder."""
    return to_schema(_get(session, encoder_id, tenant))


def list_encoders(
    session: Session, params: ListingParams, status: str | None = None, *, tenant: str
) -> EncoderPage:
    """A page of the tenant's encoders (optionally in one status), newest first."""
    return tenant_page(
        EncoderPage,
        lambda window: repo.list_encoders(session, window, status),
        params,
        tenant,
        lambda encoder: (encoder.created_at, encoder.id),
        to_schema,
    )


def weights_file(session: Session, storage: Storage, encoder_id: uuid.UUID, *, tenant: str) -> Path:
    """The weights file of the tenant's succeeded encoder; 410 once retention purged it."""
    encoder = _get(session, encoder_id, tenant)
    if encoder.purged_at is not None:
        raise Gone(_PURGED.format(encoder_id=encoder.id))
    path = storage.encoder_weights(encoder.id)
    if encoder.status != "succeeded" or not path.exists():
        raise NotReady(f"the encoder is {encoder.status}; its weights exist once it has succeeded")
    return path


def delete_encoder(session: Session, storage: Storage, encoder_id: uuid.UUID, *, tenant: str) -> None:
    """Delete an encoder (a running job stops at its next progress report); 409 while audits use it."""
    encoder = _get(session, encoder_id, tenant)
    in_use = repo.count_active_audits_with_encoder(session, encoder.id)
    if in_use:
        raise Conflict(f"{in_use} queued or running audit(s) use this encoder; cancel them first")
    repo.delete_encoder(session, encoder)
    session.commit()  # before the weights go: a failed commit leaves the encoder whole
    storage.encoder_weights(encoder_id).unlink(missing_ok=True)


def audit_encoder(
    session: Session, encoder_id: uuid.UUID, config: dict[str, Any], chosen: dict[str, Any], tenant: str
) -> dict[str, Any]:
    """The audit config that reuses a registered encoder: its checkpoint reference, its image size and
    preset (unless chosen otherwise); 422 when the encoder is not ready or the method uses no MAE."""
    from synthaudit.models.config import AuditConfig
    from synthaudit.models.methods import get_method

    encoder = repo.get_encoder(session, encoder_id, tenant)
    if encoder is None:
        raise Unprocessable(f"encoder_id: no encoder {encoder_id}")
    if encoder.purged_at is not None:
        raise Unprocessable("encoder_id: " + _PURGED.format(encoder_id=encoder_id))
    if encoder.status != "succeeded":
        raise Unprocessable(f"encoder_id: encoder {encoder_id} is {encoder.status}, not succeeded")
    spec = encoder.config
    if "mae_preset" in chosen and chosen["mae_preset"] != spec["mae_preset"]:
        raise Unprocessable(
            f"config: mae_preset {chosen['mae_preset']!r} differs from the encoder's {spec['mae_preset']!r}"
        )
    merged = {**config, "mae_preset": spec["mae_preset"], "checkpoint": f"{CHECKPOINT_REF}{encoder_id}"}
    if "image_size" not in chosen:
        merged["image_size"] = spec["image_size"]
    if "pretrain_images_seen" not in chosen:
        merged["pretrain_images_seen"] = spec.get("pretrain_images_seen")
    resolved = AuditConfig.from_dict(merged)
    if not any(view.encoder == "mae" for view in get_method(resolved.method).views(resolved)):
        raise Unprocessable(
            f"encoder_id: method {resolved.method!r} uses no MAE encoder; use method 'paper' "
            "(or 'similarity' with encoder 'mae')"
        )
    return resolved.to_dict()
