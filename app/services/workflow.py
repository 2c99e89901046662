"""The workflow fields of a new audit: a reused encoder, a completion webhook, patient labels and rule."""

from __future__ import annotations

import functools
import hashlib
import json
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from synthaudit.app.core import net_guard
from synthaudit.app.core import repository as repo
from synthaudit.app.core.webhook_signing import new_secret
from synthaudit.app.problems import Unprocessable
from synthaudit.app.schemas import AuditCreate, rfc3339
from synthaudit.app.services.encoders import audit_encoder
from synthaudit.app.services.pseudonyms import group_secret


def audit_fields(session: Session, body: AuditCreate, config: dict[str, Any], tenant: str) -> dict[str, Any]:
    """Column values of the audit row besides the datasets: config, labels and the workflow choices."""
    if body.encoder_id is not None:
        config = audit_encoder(session, body.encoder_id, config, body.config.chosen(), tenant)
    labels: dict[str, int] = dict(body.labels) if body.labels else {}
    patient_labels: dict[str, int] | None = None
    if body.patient_labels:
        patient_labels, from_patients = _patient_labels(session, body, tenant)
        clash = sorted(i for i, v in from_patients.items() if i in labels and labels[i] != v)
        if clash:
            raise Unprocessable(
                f"labels: image labels contradict their patient's label: {', '.join(clash[:10])}"
            )
        labels = {**from_patients, **labels}
    fields = {
        "config": config,
        "labels": labels or None,
        "encoder_id": body.encoder_id,
        "webhook_url": check_webhook_url(body.webhook_url) if body.webhook_url else None,
        "webhook_secret": new_secret() if body.webhook_url else None,  # shown once, in the answer
        "patient_labels": patient_labels,
        "patient_aggregation": body.patient_aggregation,
    }
    fields["trail"] = _trail(session, body, fields, tenant)
    return fields


def _set_hash(session: Session, dataset_id: Any) -> dict[str, Any]:
    """sha256 over the sorted `id<TAB>file sha256` lines of a dataset: the input set's fingerprint."""
    rows = repo.image_hashes(session, dataset_id)
    digest = hashlib.sha256("".join(f"{name}\t{sha}\n" for name, sha in rows).encode()).hexdigest()
    return {"dataset_id": str(dataset_id), "images": len(rows), "sha256": digest}


def _canonical_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


@functools.lru_cache(maxsize=1)
def code_version() -> dict[str, str | None]:
    """The package version and, when running from a git checkout, its commit."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("synthaudit")
    except PackageNotFoundError:
        package = None
    commit = None
    git = Path(__file__).resolve().parents[2] / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if head.startswith("ref: "):
            ref = git / head[5:]
            if ref.exists():
                commit = ref.read_text().strip()
            else:  # packed refs
                for line in (git / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + head[5:]):
                        commit = line.split()[0]
        else:
            commit = head
    except OSError:
        pass
    return {"version": package, "git_commit": commit}


def _trail(session: Session, body: AuditCreate, fields: dict[str, Any], tenant: str) -> dict[str, Any]:
    """Provenance fixed when the audit is created (timings and timestamps are added when it is read)."""
    config = fields["config"]
    encoder = None
    if body.encoder_id is not None:
        row = repo.get_encoder(session, body.encoder_id, tenant)
        if row is not None:
            encoder = {
                "id": str(row.id),
                "data_hash": row.data_hash,
                "config": row.config,
                "final_loss": row.final_loss,
            }
    labels = fields["labels"] or {}
    return {
        "inputs": {
            "real": _set_hash(session, body.real_dataset_id),
            "generated": _set_hash(session, body.generated_dataset_id),
            "reference": _set_hash(session, body.reference_dataset_id) if body.reference_dataset_id else None,
            "labels": {"images": len(labels), "sha256": _canonical_hash(labels) if labels else None},
            "patient_labels": len(fields["patient_labels"] or {}),
        },
        "code": code_version(),
        "encoder": encoder,
        "seed": config.get("seed"),
        "config_sha256": _canonical_hash(config),
    }


def audit_trail(audit: Any) -> dict[str, Any] | None:
    """The stored trail with the audit's timings and timestamps (None for audits older than the trail)."""
    if not audit.trail:
        return None
    return {
        **audit.trail,
        "timings": audit.stage_timings or {},
        "created_at": rfc3339(audit.created_at) if audit.created_at else None,
        "started_at": rfc3339(audit.started_at) if audit.started_at else None,
        "finished_at": rfc3339(audit.finished_at) if audit.finished_at else None,
        "status": audit.status,
    }


def check_webhook_url(url: str) -> str:
    """An absolute http(s) URL without credentials, to a destination the SSRF guard accepts without DNS
    (port 80/443, no literal private address, no `localhost`) unless WEBHOOK_ALLOWED_HOSTS lists it;
    422 otherwise. The delivery resolves and checks it again (app/core/net_guard.py)."""
    from synthaudit.app.core.config import get_settings
    from synthaudit.app.core.webhooks import allowlist_of

    try:
        net_guard.check_url(url.strip(), allowlist_of(get_settings()))
    except net_guard.Refused as exc:
        raise Unprocessable(f"webhook_url: {exc}") from exc
    return url.strip()


def _patient_labels(
    session: Session, body: AuditCreate, tenant: str
) -> tuple[dict[str, int], dict[str, int]]:
    """Patient labels keyed by pseudonym (raw PatientIDs are hashed at once) and the image labels they imply."""
    from synthaudit.models.groups import is_pseudonym, pseudonym

    rows = repo.image_patients(session, body.real_dataset_id)
    known = {key for _, key in rows if key}
    if not known:
        raise Unprocessable(
            "patient_labels: the real dataset has no patient information (upload DICOM files with PatientID)"
        )
    secret = group_secret(tenant)
    keyed: dict[str, int] = {}
    for raw, value in (body.patient_labels or {}).items():
        key = raw if is_pseudonym("patient", raw) else pseudonym("patient", raw, secret)
        keyed[key] = int(value)
    unknown = len([k for k in keyed if k not in known])
    if unknown:
        raise Unprocessable(f"patient_labels: {unknown} patient(s) are not among the real dataset's patients")
    return keyed, {name: keyed[key] for name, key in rows if key in keyed}
