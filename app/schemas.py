"""Request and response bodies of the HTTP API (pydantic; ORM objects never leave the services)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, PlainSerializer

from synthaudit import __version__
from synthaudit.models.methods import methods_text


def as_utc(value: datetime) -> datetime:
    """A timestamp in UTC; a naive one (SQLite gives them back so) is read as the UTC it was stored as."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def rfc3339(value: datetime) -> str:
    """RFC 3339 in UTC with a `Z`: the one form of every timestamp the API returns, on every backend."""
    return as_utc(value).isoformat().replace("+00:00", "Z")


# every *_at field of a response: stored naive or aware, written "2026-12-07T16:30:00.123456Z"
UtcDatetime = Annotated[datetime, AfterValidator(as_utc), PlainSerializer(rfc3339, return_type=str)]

# Upper bounds of the numbers a client chooses (issue 14 #15): a pretraining budget of 50 M images is
# about 1,000 epochs of a 50,000-image set (hours on one GPU); seeds as torch takes them.
MAX_PRETRAIN_IMAGES_SEEN = 50_000_000
MAX_SEED = 2**63 - 1

Role = Literal["real", "generated", "reference"]  # reference: real images known not used
Status = Literal["queued", "running", "succeeded", "failed", "cancelled"]
ResultsFormat = Literal["synthaudit", "imageclef"]


class RejectedFile(BaseModel):
    """A file that was not stored (or not decoded), and why."""

    name: str
    reason: str


class DatasetOut(BaseModel):
    """An uploaded image set."""

    id: uuid.UUID
    role: Role
    name: str | None = None
    image_count: int
    total_bytes: int
    rejected: list[RejectedFile] = []
    created_at: UtcDatetime
    purged_at: UtcDatetime | None = Field(
        default=None, description="when retention removed its images (the summary stays)"
    )
    rejected_count: int = Field(
        default=0,
        description="how many files were rejected; listings leave `rejected` empty (GET the dataset for it)",
    )


class DatasetPage(BaseModel):
    """GET /v1/datasets: a page of the tenant's datasets, newest first."""

    items: list[DatasetOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


class ImageOut(BaseModel):
    """One stored image: `id` is the id used in results and labels."""

    id: str
    file_name: str
    sha256: str
    size_bytes: int


class ImagePage(BaseModel):
    """A page of a dataset's images, ordered by id."""

    items: list[ImageOut]
    offset: int
    limit: int
    total: int


class AuditConfigIn(BaseModel):
    """The audit settings a client may choose; omitted ones take the engine's defaults."""

    model_config = ConfigDict(extra="forbid")

    method: str | None = Field(
        default=None, examples=["default"], description=f"the membership method: {methods_text()}"
    )
    encoder: str | None = Field(
        default=None, examples=["mae"], description="encoder of the `similarity` method"
    )
    metric: Literal["cosine", "euclidean", "manhattan"] | None = None
    k: int | None = Field(default=None, ge=1, le=100)
    decision: Literal["auto", "fdr", "calibrated", "prior", "mixture", "fixed"] | None = Field(
        default=None,
        description="auto: fdr when images known not to be used exist (labels 0 or a reference dataset), "
        "else calibrated with labels of both kinds, else prior",
    )
    used_fraction: float | None = Field(default=None, gt=0.0, lt=1.0)
    threshold: float | None = None
    fdr: float | None = Field(
        default=None, gt=0.0, lt=1.0, description="target false discovery rate of the fdr rule (default 0.1)"
    )
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    image_size: int | None = Field(default=None, ge=8, le=1024)
    mae_preset: str | None = None
    pretrain_images_seen: int | None = Field(
        default=None, ge=1, le=MAX_PRETRAIN_IMAGES_SEEN, description="pretraining budget in images seen"
    )
    batch_size: int | None = Field(default=None, ge=1, le=4096)
    alignment: Literal["auto", "grid", "off"] | None = Field(
        default=None,
        description="auto (default): the default method's thumbnail search tolerates small shifts, rotations "
        "and scalings when the audit's own images show such copies, and every generated image is registered "
        "to its candidate real images (turned, rescaled and moved copies); grid: the tolerant search only; "
        "off: neither",
    )
    nifti_axis: Literal["axial", "coronal", "sagittal", "all"] | None = Field(
        default=None,
        description="NIfTI volumes (.nii, .nii.gz) become 2D slices along this axis of their RAS "
        "orientation: axial (default), coronal, sagittal, or all three",
    )
    drop_reference_duplicates: bool | None = Field(
        default=None,
        description="false (default): an audit whose real candidates repeat reference images (same or "
        "near-identical pixels) is refused; true: those candidates are dropped and counted in the metrics",
    )

    def chosen(self) -> dict[str, Any]:
        """Only the settings the client set."""
        return self.model_dump(exclude_none=True)


class AuditCreate(BaseModel):
    """POST /v1/audits: which datasets to compare, optional labels, and the settings."""

    model_config = ConfigDict(extra="forbid")

    real_dataset_id: uuid.UUID
    generated_dataset_id: uuid.UUID
    reference_dataset_id: uuid.UUID | None = Field(
        default=None,
        description="a dataset of role `reference`: real images known NOT to be in the training set (a "
        "hold-out); the real images are tested against them (p-values, an FDR-controlled verdict)",
    )
    labels: dict[str, Literal[0, 1]] | None = Field(
        default=None, description="known membership of some real images: {image id: 1 used / 0 not used}"
    )
    config: AuditConfigIn = Field(default_factory=AuditConfigIn)
    # Workflow (docs/workflow.md).
    encoder_id: uuid.UUID | None = Field(
        default=None, description="reuse a registered encoder (POST /v1/encoders): no pretraining"
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="POSTed once when the audit ends, signed by the Standard Webhooks scheme "
        "(webhook-id, webhook-timestamp, webhook-signature) with the secret the answer shows once; "
        "a public http(s) destination on port 80 or 443, unless the operator allows it (docs/workflow.md)",
    )
    patient_labels: dict[str, Literal[0, 1]] | None = Field(
        default=None,
        description="known membership per patient (DICOM PatientID, or its pseudonym): labels all their images",
    )
    patient_aggregation: Literal["any", "mean-score"] = Field(
        default="any", description="a patient is used when any image is (any), or by the mean image score"
    )


class AuditLinks(BaseModel):
    self: str
    results: str
    metrics: str
    report: str | None = None
    patients: str | None = None


class AuditOut(BaseModel):
    """Where an audit stands."""

    id: uuid.UUID
    status: Status
    stage: str | None
    progress: float = Field(ge=0.0, le=100.0)
    error: str | None = None
    real_dataset_id: uuid.UUID | None
    generated_dataset_id: uuid.UUID | None
    reference_dataset_id: uuid.UUID | None = None
    config: dict[str, Any]
    labelled_images: int
    stage_timings: dict[str, float] = {}
    created_at: UtcDatetime
    started_at: UtcDatetime | None = None
    finished_at: UtcDatetime | None = None
    links: AuditLinks
    encoder_id: uuid.UUID | None = None
    webhook_status: str | None = Field(default=None, description="sending, delivered or failed")
    webhook_secret: str | None = Field(
        default=None,
        description="`whsec_…`: the key of this audit's webhook signatures, only in the answer to the POST "
        "that created the audit (and its Idempotency-Key repeats); null everywhere else",
    )
    patient_aggregation: str = "any"
    labelled_patients: int = 0
    trail: dict[str, Any] | None = Field(
        default=None,
        description="provenance: input set hashes, labels hash, code version, encoder, seed, config hash, timings",
    )


class AuditPage(BaseModel):
    """GET /v1/audits: a page of the tenant's audits, newest first."""

    items: list[AuditOut]
    next_cursor: str | None = Field(description="pass as `cursor` for the next page; null on the last page")


Number = float | int | None  # ints (counts) stay ints, as in the CLI's metrics file


class MetricsOut(BaseModel):
    """GET /v1/audits/{id}/metrics: `audit_id` plus the document `synthaudit audit --metrics` writes
    (models.summary.metrics_document); every key is always present, null where it does not apply."""

    audit_id: uuid.UUID
    method: str | None = None
    decision_rule: str
    threshold: float
    calibrated: bool = Field(
        description="true when the real images were tested against known-not-used ones and the reference "
        "check passed (or could not be made); false when uncalibrated or inconclusive (results.csv then has "
        "no p_value / q_value)"
    )
    fdr: float | None = Field(default=None, description="the target false discovery rate (calibrated audits)")
    counts: dict[str, int | None] = Field(
        description="real, generated, used, not_used (the `used` column's decisions: a rule's output, not "
        "findings), labelled, candidates, reference, rejected_real, rejected_generated, rejected_reference; "
        "flagged and not_flagged: candidates Benjamini-Hochberg flags at the FDR and candidates tested but "
        "not flagged (null when nothing was tested: uncalibrated or inconclusive)"
    )
    reference_check: dict[str, Any] | None = Field(
        default=None,
        description="null without a reference (uncalibrated); else the blind reference check, a two-sample "
        "test of the reference images against the candidates that never looks at the generated images: test "
        "(the classifier test over independent units, or with fewer than 10 units the sign-flip test of "
        "near-duplicate pairs across the reference), statistic (the classifier's held-out AUC, 0.5 = alike; "
        "null for the paired test), p_value (the test made), level, passed (false: the verdict is "
        "inconclusive; null: neither test could be made), units (independent units), classifier_p_value, "
        "pairs (near-duplicate pairs with one image in the reference; null when not looked for), "
        "paired_statistic, paired_p_value (null: fewer than 20 pairs), grouping, n_reference, n_candidates, "
        "features, corrected, effective_reference_size, message (one plain sentence)",
    )
    leakage: dict[str, Any] | None = Field(
        default=None,
        description="null when uncalibrated; else the set-level rank test: verdict (detected, not_detected or "
        "inconclusive), detected (null when inconclusive), p_value, level, test, statistic, n_candidates, "
        "n_reference, n_flagged at the FDR, fdr, confidence, used_count_lower_bound (a lower confidence bound "
        "on the number of used candidates), used_share_estimate, used_share_ci, min_p_value, "
        "min_reference_size (reference images needed for Benjamini-Hochberg to flag anything at this FDR), "
        "reference_too_small (nothing can be flagged, whatever the scores), reason (null, or "
        "reference_check_failed); when inconclusive p_value, statistic, n_flagged, used_count_lower_bound, "
        "used_share_estimate and used_share_ci are null",
    )
    reference_overlap: dict[str, Any] | None = Field(
        default=None,
        description="images found both in the reference and among the candidates, when checked (null otherwise)",
    )
    registered_copies: list[dict[str, Any]] | None = Field(
        default=None,
        description="null when the audit did not register its images (a method without the thumbnail view, "
        "or alignment off); else the real images that a generated image registers to much better than any "
        "other real image does (turned, rescaled and moved copies; docs/design.md record 15), highest margin "
        "first: id, generated (the copy), ncc (after registration), baseline (the best NCC of the real image "
        "to the other real images), margin (in Fisher-z units, over the larger of that baseline and the copy's "
        "best fit to any other real image), angle (degrees), "
        "zoom, dx, dy (pixels of the working image size): the real image turned, rescaled and moved by them "
        "matches the copy",
    )
    power: dict[str, Any] | None = Field(
        default=None, description="calibrated audits with known-used labels: how many of them were flagged"
    )
    metrics: dict[str, Number] | None = Field(
        default=None,
        description="with labels: accuracy, precision, recall, specificity, f1, auc, tpr_at_1pct_fpr, "
        "and tp, fp, tn, fn, n",
    )
    cross_validated: dict[str, Number] | None = Field(
        default=None, description="with calibration labels: the same metrics, each image decided out of fold"
    )
    rejected: dict[str, list[RejectedFile]] = {}


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    version: str = Field(default_factory=lambda: __version__, description="the synthaudit package's version")


class Readiness(BaseModel):
    status: Literal["ok", "unavailable"]
    checks: dict[str, str]


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    instance: str | None = None
    errors: list[dict[str, Any]] | None = None
