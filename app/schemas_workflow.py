"""Request and response bodies of the workflow endpoints: reusable encoders."""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from synthaudit.app.schemas import MAX_PRETRAIN_IMAGES_SEEN, MAX_SEED, UtcDatetime

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class EncoderConfigIn(BaseModel):
    """What decides the encoder's weights; omitted settings take the audit engine's defaults."""

    model_config = ConfigDict(extra="forbid")

    image_size: int | None = Field(default=None, ge=8, le=1024, description="decode size (as the audit's)")
    mae_preset: str | None = Field(default=None, examples=["mae_tiny_patch8_64"])
    pretrain_images_seen: int | None = Field(
        default=None, ge=1, le=MAX_PRETRAIN_IMAGES_SEEN, description="budget; default by set size"
    )
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)

    def chosen(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)


class EncoderCreate(BaseModel):
    """POST /v1/encoders: pretrain an MAE on one dataset, or on several in order."""

    model_config = ConfigDict(extra="forbid")

    dataset_id: uuid.UUID | None = Field(default=None, description="the dataset to pretrain on")
    dataset_ids: list[uuid.UUID] | None = Field(
        default=None,
        min_length=1,
        max_length=8,
        description="several datasets, concatenated in this order (an audit pretrains on [real, generated])",
    )
    name: str | None = Field(default=None, max_length=200)
    config: EncoderConfigIn = Field(default_factory=EncoderConfigIn)

    @model_validator(mode="after")
    def _one_source(self) -> EncoderCreate:
        if (self.dataset_id is None) == (self.dataset_ids is None):
            raise ValueError("give exactly one of dataset_id and dataset_ids")
        return self

    def sources(self) -> list[uuid.UUID]:
        return [self.dataset_id] if self.dataset_id is not None else list(self.dataset_ids or [])


class EncoderLinks(BaseModel):
    self: str
    weights: str


class EncoderOut(BaseModel):
    """A reusable encoder: its job's state and, once trained, its provenance."""

    id: uuid.UUID
    name: str | None = None
    status: JobStatus
    progress: float = Field(ge=0.0, le=100.0)
    error: str | None = None
    dataset_ids: list[uuid.UUID]
    config: dict[str, Any]
    data_hash: str | None = Field(default=None, description="sha256 of the decoded training images")
    n_images: int | None = None
    final_loss: float | None = None
    created_at: UtcDatetime
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    purged_at: UtcDatetime | None = Field(
        default=None, description="when retention removed its weights (the provenance stays)"
    )
    links: EncoderLinks


class EncoderPage(BaseModel):
    """GET /v1/encoders: a page of the tenant's encoders, newest first."""

    items: list[EncoderOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")
