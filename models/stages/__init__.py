"""The audit as five idempotent stages over a work folder, shared by the CLI, the embedded runner and Celery.

One module per stage (decode, pretrain, embed, search, decide), each `(workdir, inputs, config,
on_progress) -> None` with its artifacts named in `models/workdir.py`; `running` runs them in order.
"""

from synthaudit.models.stages.common import (
    ARTIFACTS,
    STAGE_WEIGHTS,
    STAGES,
    AuditInputs,
    AuditOutcome,
    Progress,
    _load_npz,
    _record_timing,
    method_for,
    stage_done,
)
from synthaudit.models.stages.decide import (
    Decisions,
    decide_images,
    decision_rule_for,
    read_evidence,
    run_decide,
)
from synthaudit.models.stages.decode import load_decoded, load_reference_mask, run_decode
from synthaudit.models.stages.embed import embed_features, run_embed
from synthaudit.models.stages.pretrain import fitted_encoder_path, mae_checkpoint_path, run_pretrain
from synthaudit.models.stages.running import _RUNNERS, overall_progress, read_outcome, run_audit, run_stage
from synthaudit.models.stages.search import (
    ATTRIBUTION_K,
    WARP_CHUNK,
    aligned_gr,
    aligned_view,
    load_neighbours,
    neighbourhood_size,
    read_alignment,
    run_search,
    stored_versions,
    version_features,
)

__all__ = [
    "ARTIFACTS",
    "ATTRIBUTION_K",
    "STAGES",
    "STAGE_WEIGHTS",
    "WARP_CHUNK",
    "_RUNNERS",
    "AuditInputs",
    "AuditOutcome",
    "Decisions",
    "Progress",
    "_load_npz",
    "_record_timing",
    "aligned_gr",
    "aligned_view",
    "decide_images",
    "decision_rule_for",
    "embed_features",
    "fitted_encoder_path",
    "load_decoded",
    "load_neighbours",
    "load_reference_mask",
    "mae_checkpoint_path",
    "method_for",
    "neighbourhood_size",
    "overall_progress",
    "read_alignment",
    "read_evidence",
    "read_outcome",
    "run_audit",
    "run_decide",
    "run_decode",
    "run_embed",
    "run_pretrain",
    "run_search",
    "run_stage",
    "stage_done",
    "stored_versions",
    "version_features",
]
