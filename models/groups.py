"""Patients and series: pseudonymous group keys from DICOM tags, and per-patient results.

Raw identifiers (PatientID, StudyInstanceUID, SeriesInstanceUID) never leave this module: they are
replaced by keyed hashes (HMAC-SHA256, `secret` from the operator) the moment they are read.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import BinaryIO

import numpy as np

AGGREGATIONS = ("any", "mean-score")
PATIENTS_HEADER = [
    "patient",
    "images",
    "images_used",
    "used",
    "score",
    "max_score",
    "mean_score",
    "studies",
    "series",
    "p_value",
    "q_value",
    "role",
]
_TAGS = {"patient": "PatientID", "study": "StudyInstanceUID", "series": "SeriesInstanceUID"}
_PREFIX = {"patient": "p", "study": "st", "series": "se"}


@dataclass(frozen=True)
class GroupKeys:
    """The pseudonymous patient, study and series keys of one image (None when the tag is absent)."""

    patient: str | None = None
    study: str | None = None
    series: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"patient": self.patient, "study": self.study, "series": self.series}


@dataclass(frozen=True)
class PatientResult:
    """One patient's aggregated decision."""

    patient: str
    images: int
    images_used: int
    used: int
    score: float  # the aggregated score the decision was made on
    max_score: float
    mean_score: float
    studies: int
    series: int
    p_value: float | None = None  # patient-level conformal p-value (calibrated audits)
    q_value: float | None = None
    role: str = "candidate"  # "reference": a patient known not to be used


def pseudonym(kind: str, value: str, secret: str = "") -> str:
    """A stable pseudonymous key for a raw identifier: `p_<16 hex>` (HMAC-SHA256 with the secret)."""
    if kind not in _PREFIX:
        raise ValueError(f"unknown group kind {kind!r}")
    digest = hmac.new(secret.encode(), f"synthaudit:{kind}:{value.strip()}".encode(), hashlib.sha256)
    return f"{_PREFIX[kind]}_{digest.hexdigest()[:16]}"


def tenant_key(secret: str, tenant: str) -> str:
    """A tenant's own pseudonym key, HMAC-SHA256(secret, tenant) in hex: the same PatientID gets unrelated
    pseudonyms in two tenants, so a tenant cannot re-identify another's patients by uploading candidates."""
    return hmac.new(secret.encode(), f"synthaudit:tenant:{tenant}".encode(), hashlib.sha256).hexdigest()


def is_pseudonym(kind: str, value: str) -> bool:
    """True when value already looks like a key of this kind (so it is not hashed again)."""
    prefix = _PREFIX[kind] + "_"
    tail = value[len(prefix) :]
    return value.startswith(prefix) and len(tail) == 16 and all(c in "0123456789abcdef" for c in tail)


def keys_from_dataset(ds: object, secret: str = "") -> GroupKeys:
    """Group keys of a pydicom Dataset (header only is enough)."""
    values: dict[str, str | None] = {}
    for kind, tag in _TAGS.items():
        raw = getattr(ds, tag, None)
        text = str(raw).strip() if raw is not None else ""
        values[kind] = pseudonym(kind, text, secret) if text else None
    return GroupKeys(**values)


def keys_from_bytes(data: bytes, secret: str = "") -> GroupKeys | None:
    """Group keys of a DICOM file's bytes; None for anything that is not DICOM (PNG, JPEG, ...)."""
    if data[128:132] != b"DICM":
        return None
    return _keys_from_header(io.BytesIO(data), secret)


def keys_from_file(path: str | Path, secret: str = "") -> GroupKeys | None:
    """Group keys of a DICOM file (only its header is read); None for other images or no tags."""
    from synthaudit.models.io import DICOM_SUFFIXES

    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(_META_BYTES)
    except OSError:
        return None
    preamble = head[128:132] == b"DICM"
    if not preamble and path.suffix.lower() not in DICOM_SUFFIXES:
        return None
    if _is_deflated(head):  # pydicom would inflate the whole data set, even to read three tags
        return None
    return _keys_from_header(str(path), secret, force=not preamble)


_META_BYTES = 64 * 1024  # the file-meta group (transfer syntax) sits at the start of a DICOM file


def _is_deflated(head: bytes) -> bool:
    """True when the file meta names a deflated transfer syntax, or cannot be read from `head`
    (a broken or over-long meta group: the file is left out rather than handed to pydicom)."""
    from synthaudit.models.dicom import DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN, DicomRejected, transfer_syntax

    try:
        return transfer_syntax(head) == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN
    except DicomRejected:
        return True


def _keys_from_header(fp: str | BinaryIO, secret: str, force: bool = False) -> GroupKeys | None:
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=list(_TAGS.values()), force=force)
    except (InvalidDicomError, OSError, ValueError, EOFError, KeyError, TypeError):
        return None
    keys = keys_from_dataset(ds, secret)
    return keys if any(keys.to_dict().values()) else None


def read_groups(source: str | Path, secret: str = "") -> dict[str, GroupKeys]:
    """Group keys of every DICOM file in a folder (image id -> keys, ids as `models.io.load_images` gives)."""
    from synthaudit.models.io import _file_head, _walk_folder, _wants, image_ids

    root = Path(source)
    if not root.is_dir():
        return {}
    candidates = []
    for name in _walk_folder(root):
        try:
            if _wants(name, partial(_file_head, root / name)):
                candidates.append(name)
        except OSError:
            continue
    ids = image_ids(candidates)
    out: dict[str, GroupKeys] = {}
    for name in candidates:
        keys = keys_from_file(root / name, secret)
        if keys is not None:
            out[ids[name]] = keys
    return out


def aggregate_patients(
    ids: list[str],
    scores: np.ndarray | list[float],
    used: np.ndarray | list[int],
    groups: Mapping[str, GroupKeys | Mapping[str, str | None]],
    threshold: float,
    rule: str = "any",
) -> list[PatientResult]:
    """Per-patient decisions. `any`: a patient counts as used when any of their images is decided used
    (score = the highest image score); `mean-score`: when the mean image score reaches the threshold.
    Images without a patient key are left out. Sorted by score, highest first."""
    if rule not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {', '.join(AGGREGATIONS)}, not {rule!r}")
    members: dict[str, list[int]] = {}
    for i, image_id in enumerate(ids):
        keys = _as_keys(groups.get(image_id))
        if keys is not None and keys.patient:
            members.setdefault(keys.patient, []).append(i)
    s = np.asarray(scores, dtype=np.float64)
    u = np.asarray(used, dtype=np.int64)
    out = []
    for patient, idx in members.items():
        ps, pu = s[idx], u[idx]
        max_score, mean_score = float(ps.max()), float(ps.mean())
        if rule == "any":
            decided, score = int(pu.any()), max_score
        else:
            decided, score = int(mean_score >= threshold), mean_score
        image_keys = [_as_keys(groups.get(ids[i])) for i in idx]
        out.append(
            PatientResult(
                patient=patient,
                images=len(idx),
                images_used=int(pu.sum()),
                used=decided,
                score=score,
                max_score=max_score,
                mean_score=mean_score,
                studies=len({k.study for k in image_keys if k is not None and k.study}),
                series=len({k.series for k in image_keys if k is not None and k.series}),
            )
        )
    out.sort(key=lambda r: (-r.score, r.patient))
    return out


def reference_patients(
    ids: list[str], roles: list[str], groups: Mapping[str, GroupKeys | Mapping[str, str | None]]
) -> set[str]:
    """Patients all of whose images are reference images (known not used)."""
    seen: dict[str, bool] = {}
    for image_id, role in zip(ids, roles, strict=True):
        keys = _as_keys(groups.get(image_id))
        if keys is not None and keys.patient:
            seen[keys.patient] = seen.get(keys.patient, True) and role == "reference"
    return {patient for patient, all_reference in seen.items() if all_reference}


def calibrate_patients(patients: list[PatientResult], reference: set[str], fdr: float) -> list[PatientResult]:
    """Patient-level verdicts: each candidate patient's aggregated score (`score`: the maximum image
    score for the `any` rule, the mean for `mean-score`) gets a conformal p-value against the reference
    patients' scores, and Benjamini-Hochberg across candidate patients decides `used` at `fdr`.

    Valid when the reference patients are drawn like the not-used candidate patients (including how
    many images each has, since the score aggregates them); images of one patient need not be
    independent. Without reference patients the input is returned unchanged (uncalibrated).
    """
    from synthaudit.models.calibration import benjamini_hochberg, conformal_p_values

    ref_scores = [r.score for r in patients if r.patient in reference]
    candidates = [r for r in patients if r.patient not in reference]
    if not ref_scores or not candidates:
        return patients
    p = conformal_p_values([r.score for r in candidates], ref_scores)
    flagged, q = benjamini_hochberg(p, fdr)
    tested = {
        r.patient: replace(r, used=int(f), p_value=float(pv), q_value=float(qv))
        for r, pv, qv, f in zip(candidates, p, q, flagged, strict=True)
    }
    return [tested.get(r.patient) or replace(r, used=0, role="reference") for r in patients]


def _fmt_p(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _as_keys(value: GroupKeys | Mapping[str, str | None] | None) -> GroupKeys | None:
    if value is None or isinstance(value, GroupKeys):
        return value
    return GroupKeys(patient=value.get("patient"), study=value.get("study"), series=value.get("series"))


def expand_patient_labels(
    patient_labels: Mapping[str, int], groups: Mapping[str, GroupKeys | Mapping[str, str | None]]
) -> dict[str, int]:
    """Image labels from patient labels: every image of a labelled patient gets the patient's label."""
    out = {}
    for image_id, keys in groups.items():
        k = _as_keys(keys)
        if k is not None and k.patient is not None and k.patient in patient_labels:
            out[image_id] = int(patient_labels[k.patient])
    return out


def _fmt(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.6f}"


def patients_csv_lines(rows: Iterable[PatientResult]) -> list[list[str]]:
    """The rows of patients.csv, header first (text cells formula-guarded: models/csv_safety.py)."""
    from synthaudit.models.csv_safety import text_cell

    return [PATIENTS_HEADER] + [
        [
            text_cell(r.patient),
            str(r.images),
            str(r.images_used),
            str(r.used),
            _fmt(r.score),
            _fmt(r.max_score),
            _fmt(r.mean_score),
            str(r.studies),
            str(r.series),
            _fmt_p(r.p_value),
            _fmt_p(r.q_value),
            text_cell(r.role),
        ]
        for r in rows
    ]


def write_patients_csv(rows: Iterable[PatientResult], path: str | Path) -> Path:
    """Write patients.csv atomically (models/csv_safety.py: the one CSV writer)."""
    from synthaudit.models.csv_safety import write_csv_atomic

    return write_csv_atomic(patients_csv_lines(rows), path)
