"""The audit configuration: one frozen dataclass that round-trips through JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

ALIGNMENT_SETTINGS = ("auto", "grid", "off")  # models/alignment.py, models/stages/register.py
DECISION_RULES = ("auto", "fdr", "calibrated", "prior", "mixture", "fixed")
DEFAULT_METHOD = "default"
NIFTI_AXES = ("axial", "coronal", "sagittal", "all")  # models/nifti.py


@dataclass(frozen=True)
class AuditConfig:
    """Everything that decides an audit's result; the same config and seed give the same CSV."""

    method: str = DEFAULT_METHOD
    encoder: str = "mae"
    metric: str = "cosine"
    k: int = 5
    decision: str = "auto"
    used_fraction: float = 0.5
    threshold: float | None = None
    fdr: float = 0.1  # target false discovery rate of the "fdr" rule (needs known-not-used images)
    seed: int = 0
    device: str = "auto"
    image_size: int = 64
    mae_preset: str = "mae_tiny_patch8_64"
    pretrain_images_seen: int | None = None
    batch_size: int = 64
    weights: str | None = None
    checkpoint: str | None = None
    # Search bases of at least this many vectors use an approximate IVF index (None: always exact).
    ivf_min_size: int | None = 1_000_000
    compile: bool = False  # torch.compile the MAE blocks (GPU; off by default)
    # "auto": the thumbnail view's search tolerates small shifts / rotations / scalings of copies when the
    # audit's own images show such copies (models/alignment.py), and every generated image is registered to
    # its candidate real images (models/stages/register.py); "grid": the gated search only (before issue
    # 23); "off": neither.
    alignment: str = "auto"
    # Candidates that repeat a reference image (models/reference_overlap.py): False refuses the audit, True
    # drops them from the candidates before every later stage (counted in overlap.json and the metrics).
    drop_reference_duplicates: bool = False
    # NIfTI volumes become slices along this axis (RAS: axial z, coronal y, sagittal x; "all": the three).
    nifti_axis: str = "axial"

    def __post_init__(self) -> None:
        if self.decision not in DECISION_RULES:
            raise ValueError(f"decision must be one of {', '.join(DECISION_RULES)}, not {self.decision!r}")
        if self.decision == "fixed" and self.threshold is None:
            raise ValueError("decision 'fixed' needs a threshold")
        if not 0.0 < self.used_fraction < 1.0:
            raise ValueError("used_fraction must lie strictly between 0 and 1")
        if not 0.0 < self.fdr < 1.0:
            raise ValueError("fdr must lie strictly between 0 and 1")
        if self.k < 1:
            raise ValueError("k must be at least 1")
        if not 8 <= self.image_size <= 1024:
            raise ValueError("image_size must lie between 8 and 1024")
        if self.batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if self.pretrain_images_seen is not None and self.pretrain_images_seen < 1:
            raise ValueError("pretrain_images_seen must be positive")
        if self.alignment not in ALIGNMENT_SETTINGS:
            raise ValueError(
                f"alignment must be one of {', '.join(ALIGNMENT_SETTINGS)}, not {self.alignment!r}"
            )
        if self.nifti_axis not in NIFTI_AXES:
            raise ValueError(f"nifti_axis must be one of {', '.join(NIFTI_AXES)}, not {self.nifti_axis!r}")
        if self.ivf_min_size is not None and self.ivf_min_size < 1:
            raise ValueError("ivf_min_size must be positive (or null for exact search only)")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditConfig:
        """Build from a dict, naming any unknown key."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown audit setting(s): {', '.join(unknown)}")
        return cls(**data)
