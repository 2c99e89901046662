"""ORM tables (named *tables* so they never clash with the ML package `models/`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    Uuid,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Mapped, mapped_column

from synthaudit.app.core.db import Base

JSONType = JSON().with_variant(JSONB(), "postgresql")
ROLES = ("real", "generated", "reference")  # reference: real images known not used
ROLE_CHECK = "role IN ('real', 'generated', 'reference')"
RESULT_SOURCES = ("real", "reference")  # which uploaded set a result row's image came from
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled")
ACTIVE_STATUSES = ("queued", "running")
DEFAULT_TENANT = "default"  # owner of everything created without an API key (embedded, auth off)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Dataset(Base):
    """An uploaded set of images with one role."""

    __tablename__ = "datasets"
    __table_args__ = (
        CheckConstraint(ROLE_CHECK, name="role"),
        Index("ix_datasets_tenant_created_at_id", "tenant", "created_at", "id"),  # listings (0006)
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    role: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200))
    image_count: Mapped[int] = mapped_column(Integer, default=0)
    total_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    rejected: Mapped[list[dict[str, str]]] = mapped_column(JSONType, default=list)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    tenant: Mapped[str] = mapped_column(
        String(64), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT, index=True
    )
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # files removed (retention)


class Image(Base):
    """One stored image of a dataset; `name` is its id in results (file stem or relative path)."""

    __tablename__ = "images"
    __table_args__ = (
        UniqueConstraint("dataset_id", "name", name="uq_images_dataset_id_name"),
        CheckConstraint(ROLE_CHECK, name="role"),
    )

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
    )
    dataset_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(1024))
    file_name: Mapped[str] = mapped_column(String(1024))
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size_bytes: Mapped[int] = mapped_column(BigInteger)
    role: Mapped[str] = mapped_column(String(16))
    # Pseudonymous DICOM group keys (models/groups.py: keyed hashes, never the raw identifiers).
    patient_key: Mapped[str | None] = mapped_column(String(24), index=True)
    study_key: Mapped[str | None] = mapped_column(String(24))
    series_key: Mapped[str | None] = mapped_column(String(24))


class Audit(Base):
    """One audit job: its config, where it stands, and how it ended."""

    __tablename__ = "audits"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"),
        Index("ix_audits_status_created_at", "status", "created_at"),
        Index("ix_audits_tenant_created_at_id", "tenant", "created_at", "id"),  # listings (0006)
        UniqueConstraint("tenant", "idempotency_key", name="uq_audits_tenant_idempotency_key"),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    real_dataset_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )
    generated_dataset_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )
    # Real images known not to be in the training set: the reference of a calibrated verdict.
    reference_dataset_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)
    labels: Mapped[dict[str, int] | None] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    stage: Mapped[str | None] = mapped_column(String(32))
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    stage_timings: Mapped[dict[str, float]] = mapped_column(JSONType, default=dict)
    error: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))  # unique per tenant
    request_hash: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, onupdate=utcnow)
    tenant: Mapped[str] = mapped_column(
        String(64), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT, index=True
    )
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # work folder removed
    # Job durability (worker/recovery.py): the running stage refreshes heartbeat_at; a re-dispatch
    # bumps attempt, and tasks of an older attempt stop at once.
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    attempt: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    # Workflow (docs/workflow.md): a registered encoder instead of pretraining, a completion webhook,
    # per-patient labels (pseudonymous keys) and the rule that turns image decisions into patient ones.
    encoder_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("encoders.id", ondelete="SET NULL"), index=True
    )
    webhook_url: Mapped[str | None] = mapped_column(String(2048))
    webhook_status: Mapped[str | None] = mapped_column(String(16))  # sending, delivered, failed
    webhook_claimed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # → sending
    webhook_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # The webhook's own signing secret (`whsec_<base64>`, Standard Webhooks), made at creation and shown
    # once; kept as is because every sender must sign with it (docs/workflow.md §3).
    webhook_secret: Mapped[str | None] = mapped_column(String(128))
    patient_labels: Mapped[dict[str, int] | None] = mapped_column(JSONType)
    patient_aggregation: Mapped[str] = mapped_column(String(16), default="any", server_default="any")
    trail: Mapped[dict[str, Any] | None] = mapped_column(JSONType)  # provenance fixed at creation


class AuditResult(Base):
    """The decision for one real image of an audit, or the score of one reference-set image.

    Rows with source 'real' are results.csv (in position order); rows with source 'reference' (the
    reference set's images, positions after the real ones) are kept for patients.csv only."""

    __tablename__ = "audit_results"

    audit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer, primary_key=True)  # row order of results.csv
    image_name: Mapped[str] = mapped_column(String(1024))
    used: Mapped[int] = mapped_column(SmallInteger)
    score: Mapped[float] = mapped_column(Float)
    nearest_generated: Mapped[list[str]] = mapped_column(JSONType)  # closest first
    similarities: Mapped[list[float]] = mapped_column(JSONType)  # matching nearest_generated
    p_value: Mapped[float | None] = mapped_column(Float)  # conformal p-value (None: uncalibrated/reference)
    q_value: Mapped[float | None] = mapped_column(Float)  # Benjamini-Hochberg adjusted p-value
    role: Mapped[str] = mapped_column(String(16), default="candidate", server_default="candidate")
    source: Mapped[str] = mapped_column(String(16), default="real", server_default="real")


class AuditMetrics(Base):
    """The summary of a finished audit: threshold, counts and (with labels) classification metrics."""

    __tablename__ = "audit_metrics"

    audit_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("audits.id", ondelete="CASCADE"), primary_key=True)
    threshold: Mapped[float] = mapped_column(Float)
    decision_rule: Mapped[str] = mapped_column(String(32))
    counts: Mapped[dict[str, int]] = mapped_column(JSONType)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    rejected: Mapped[dict[str, list[dict[str, str]]]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ApiKey(Base):
    """An API key of a tenant: only the sha256 of the secret token is stored."""

    __tablename__ = "api_keys"

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(String(64), index=True)
    name: Mapped[str | None] = mapped_column(String(200))
    prefix: Mapped[str] = mapped_column(String(16))  # the token's first characters, to recognise it
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Encoder(Base):
    """A reusable MAE encoder pretrained on uploaded datasets (safetensors under STORAGE_DIR/encoders)."""

    __tablename__ = "encoders"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"),
        Index("ix_encoders_tenant_created_at_id", "tenant", "created_at", "id"),  # listings (0006)
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(
        String(64), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT, index=True
    )
    name: Mapped[str | None] = mapped_column(String(200))
    dataset_ids: Mapped[list[str]] = mapped_column(JSONType)  # pretrained on their images, in this order
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)  # image_size, mae_preset, budget, seed
    status: Mapped[str] = mapped_column(String(16), default="queued")
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    data_hash: Mapped[str | None] = mapped_column(String(64))  # sha256 of the decoded training images
    n_images: Mapped[int | None] = mapped_column(Integer)
    final_loss: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow, index=True)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # weights removed (retention)
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # while a worker trains it


class Comparison(Base):
    """A checkpoint comparison job: several generated sets audited against one real set and one reference
    (models/compare.py); its outputs live under STORAGE_DIR/comparisons/<id>/out."""

    __tablename__ = "comparisons"
    __table_args__ = (
        CheckConstraint("status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')", name="status"),
        Index("ix_comparisons_tenant_created_at_id", "tenant", "created_at", "id"),  # listings
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    tenant: Mapped[str] = mapped_column(
        String(64), default=DEFAULT_TENANT, server_default=DEFAULT_TENANT, index=True
    )
    real_dataset_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )
    reference_dataset_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )
    config: Mapped[dict[str, Any]] = mapped_column(JSONType)  # the engine's full AuditConfig
    level: Mapped[float] = mapped_column(Float)  # Holm's family-wise level
    status: Mapped[str] = mapped_column(String(16), default="queued")
    stage: Mapped[str | None] = mapped_column(String(64))  # "decode real", "2/3 embed", ...
    progress: Mapped[float] = mapped_column(Float, default=0.0)
    error: Mapped[str | None] = mapped_column(Text)
    summary: Mapped[str | None] = mapped_column(Text)  # models.compare.summary_sentence, once succeeded
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    heartbeat_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # while a worker runs it
    purged_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # output files removed


class ComparisonCheckpoint(Base):
    """One generated set of a comparison, in checkpoint order; `row` is its line of the comparison table
    (models.compare.ComparisonRow as a dict) once the comparison succeeded."""

    __tablename__ = "comparison_checkpoints"
    __table_args__ = (UniqueConstraint("comparison_id", "name", name="uq_comparison_checkpoints_name"),)

    comparison_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("comparisons.id", ondelete="CASCADE"), primary_key=True
    )
    position: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    dataset_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), index=True
    )
    row: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
