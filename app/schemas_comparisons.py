"""Request and response bodies of /v1/comparisons: several generated sets (checkpoints) audited against one
real set and one reference (models/compare.py)."""

from __future__ import annotations

import uuid
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synthaudit.app.schemas import AuditConfigIn, UtcDatetime
from synthaudit.app.schemas_workflow import JobStatus

# The request's own bound; MAX_COMPARISON_CHECKPOINTS (a setting, default 32) is checked by the service.
MAX_CHECKPOINTS_IN_BODY = 1000


class GeneratedIn(BaseModel):
    """One checkpoint: a dataset of role `generated` and its name in the table."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: uuid.UUID
    name: str | None = Field(
        default=None,
        max_length=128,
        examples=["step-500"],
        description="letters, digits, '.', '_' or '-' (default: the dataset's name); the last number in it "
        "(epoch or step) orders the checkpoints",
    )


class ComparisonCreate(BaseModel):
    """POST /v1/comparisons: the real set, the reference, 2..MAX_COMPARISON_CHECKPOINTS generated sets and
    the audit settings every checkpoint is audited with."""

    model_config = ConfigDict(extra="forbid")

    real_dataset_id: uuid.UUID
    reference_dataset_id: uuid.UUID | None = Field(
        default=None,
        description="real images known NOT to be in the training set: without it no checkpoint is tested",
    )
    generated: list[GeneratedIn] = Field(min_length=2, max_length=MAX_CHECKPOINTS_IN_BODY)
    config: AuditConfigIn = Field(default_factory=AuditConfigIn)
    level: float | None = Field(
        default=None,
        gt=0.0,
        lt=1.0,
        description="family-wise level of 'evidence' across the series (Holm; 0.05)",
    )


class CheckpointOut(BaseModel):
    """One checkpoint of a comparison; the table's columns are null until the comparison succeeded."""

    name: str
    dataset_id: uuid.UUID | None
    step: int | None = Field(default=None, description="the last number in the name (epoch or step)")
    verdict: str | None = Field(
        default=None, description="detected, not_detected, inconclusive or uncalibrated"
    )
    leakage_p: float | None = Field(default=None, description="the checkpoint's own leakage p-value")
    holm_p: float | None = Field(default=None, description="Holm-adjusted across the series")
    evidence: bool | None = Field(default=None, description="holm_p <= level (null: not tested)")
    flagged: int | None = Field(default=None, description="real images flagged at the FDR")
    used_lower_bound: int | None = Field(default=None, description="lower confidence bound on used images")
    n_generated: int | None = None
    reference_check_p: float | None = Field(default=None, description="the blind reference check's p-value")
    results: str = Field(description="the checkpoint's results.csv (`?format=imageclef` for id,label lines)")


class ComparisonLinks(BaseModel):
    self: str
    comparison_csv: str
    report: str


class ComparisonOut(BaseModel):
    """Where a comparison stands and, once it succeeded, its table and summary."""

    id: uuid.UUID
    status: JobStatus
    stage: str | None = Field(
        default=None, examples=["2/3 embed"], description="checkpoint k/n and its stage"
    )
    progress: float = Field(ge=0.0, le=100.0)
    error: str | None = None
    real_dataset_id: uuid.UUID | None
    reference_dataset_id: uuid.UUID | None = None
    level: float
    config: dict[str, Any]
    checkpoints: list[CheckpointOut] = Field(description="in checkpoint order")
    summary: str | None = Field(default=None, description="which checkpoints show evidence, in one sentence")
    created_at: UtcDatetime
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    purged_at: UtcDatetime | None = Field(
        default=None, description="when retention removed its files (the table and summary stay)"
    )
    links: ComparisonLinks


class ComparisonPage(BaseModel):
    """GET /v1/comparisons: a page of the tenant's comparisons, newest first."""

    items: list[ComparisonOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")
