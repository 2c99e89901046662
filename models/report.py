"""The audit report: one self-contained HTML page (inline PNGs, no scripts) from a finished work folder.

This module builds the report's context (the numbers and short sentences, as dataclasses) from the work
folder's data (`models.report_data`) and renders the Jinja2 template `models/templates/report.html.j2`
with autoescaping on, so every text from the inputs (ids are file names) is escaped. Plots and thumbnails
come from `models.report_plots`. The page embeds thumbnails of the audited images: it is as confidential
as the images themselves.

Calibrated audits (images known not to be used exist) lead with a plain sentence, then the leakage
test's wording; uncalibrated ones say that the ranking is all they give, state no count as a finding and
show no risk frame. When the reference check (models/reference_check.py) fails, the verdict is
inconclusive: the page leads with why (the reference differs from the candidates, found without the
generated images), states no count or bound as a finding, offers no p-value as calibrated and shows the
check's evidence (blind scores of reference vs candidates, example images side by side).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
from jinja2 import Environment, PackageLoader, StrictUndefined

from synthaudit.models.alignment import PROBE_ANGLES, PROBE_ZOOMS
from synthaudit.models.groups import GroupKeys, PatientResult
from synthaudit.models.methods import method_label
from synthaudit.models.reference_check import describe_evidence
from synthaudit.models.report_data import (
    candidate_mask,
    flagged_mask,
    inconclusive_of,
    leakage_of,
    load_report_data,
    patient_of,
    patient_results,
    reference_check_of,
    reference_scores,
    target_fdr,
)
from synthaudit.models.report_plots import (
    _figure_png,
    _new_figure,
    _score_bins,
    candidate_reference_plot,
    density_histograms,
    p_value_histogram,
    roc_plot,
    score_histogram,
    thumbnail,
)
from synthaudit.models.report_registration import RegisteredCopy, registered_copy, registration_text
from synthaudit.models.workdir import atomic_write_bytes

GALLERY_ROWS = 12
GALLERY_NEIGHBOURS = 4
CHECK_EXAMPLES = 6  # reference and candidate images shown side by side when the reference check fails
_METRIC_ROWS = ("accuracy", "precision", "recall", "specificity", "f1", "auc", "tpr_at_1pct_fpr")
_RULES = {
    "fdr": "the Benjamini-Hochberg rule at the target false discovery rate (the flagged images)",
    "calibrated": "the F1-optimal threshold on the labelled images",
    "prior": "the 'prior' rule, which marks the top {frac} of the scores as used whatever the evidence",
    "mixture": "the 'mixture' rule, where a two-component mixture fitted to the scores splits them",
    "fixed": "a threshold fixed by the user",
}
_TESTS = {"mann-whitney-exact": "exact", "mann-whitney-normal": "normal approximation"}

Groups = Mapping[str, GroupKeys | Mapping[str, str | None]]


# --- numbers as text (the template's filters) -----------------------------------------------------


def _num(value: object, digits: int = 3) -> str:
    """A number for the page: '–' when missing or not finite, thousands separators for integers."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return f"{float(value):.{digits}f}"  # type: ignore[arg-type]  # callers pass numbers; object keeps the call sites simple


def _pct(value: float) -> str:
    """A share as a percentage: 0.1 -> '10 %', 0.025 -> '2.5 %'."""
    return f"{100.0 * float(value):.3g} %"


def p_value_parts(p: float | None) -> tuple[str, int | None]:
    """A p-value for people: (3 significant digits, None), or below 0.001 (mantissa, power of ten to
    write as × 10^−power); ('–', None) when missing."""
    if p is None or not math.isfinite(p):
        return "–", None
    if p >= 1e-3:
        return f"{p:.3g}", None
    mantissa, exponent = f"{p:.1e}".split("e")
    return mantissa, abs(int(exponent))


# --- the context ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Plot:
    """One inline plot: its element id, alt text and PNG data URI."""

    id: str
    alt: str
    src: str


@dataclass(frozen=True)
class Leakage:
    """The leakage test of a calibrated audit, as the verdict and the summary state it."""

    detected: bool
    verdict: str  # "detected" or "not_detected" (an inconclusive audit has no Leakage)
    p_value: float
    test: str  # how the rank test's p-value was computed, for people
    fdr: float
    level: float
    confidence: float
    n_candidates: int
    n_reference: int
    n_flagged: int
    lower_bound: int
    min_p: float  # 1/(n_reference + 1): no image's p-value can be smaller
    smallest_p: float  # as metrics.json reports it
    share_lower: float | None
    share_estimate: float | None
    too_small: bool  # 1/(n_reference + 1) > fdr: Benjamini-Hochberg can flag nothing, whatever the scores
    min_reference_size: int | None  # reference images needed to be able to flag anything at this FDR


@dataclass(frozen=True)
class ReferenceCheck:
    """The blind reference check (reference vs candidate images, never the generated ones), for people."""

    test: str
    passed: bool | None  # None: too few independent units to test
    p_value: float | None
    auc: float | None
    level: float
    units: int
    pairs: int  # near-duplicate pairs across the reference (the paired test)
    grouping: str
    features: str
    evidence: str  # what each test saw, in words (models.reference_check.describe_evidence)
    message: str


@dataclass(frozen=True)
class Example:
    """A real image shown as the reference check's evidence (no id: reference-set images are not named)."""

    src: str
    blind_score: float


@dataclass(frozen=True)
class CheckEvidence:
    """What the failed reference check saw: the blind scores' distributions and example images."""

    plot: Plot | None
    reference: list[Example]
    candidates: list[Example]


@dataclass(frozen=True)
class Inconclusive:
    """An audit whose reference check failed: no p-value, count or bound is a finding."""

    n_candidates: int
    n_reference: int
    fdr: float
    check: ReferenceCheck | None


@dataclass(frozen=True)
class Power:
    """How many of the images labelled used the audit flags."""

    n_known_used: int
    flagged: int
    recall: float | None


@dataclass(frozen=True)
class PatientCount:
    """Candidate patients with a p-value, how many are flagged, against how many reference patients."""

    tested: int
    flagged: int
    n_reference: int


@dataclass(frozen=True)
class Verdict:
    """The verdict's numbers: the leakage test when calibrated (leak None: uncalibrated or inconclusive)."""

    leak: Leakage | None
    inconclusive: Inconclusive | None
    check: ReferenceCheck | None
    n_real: int
    n_generated: int
    method: str
    rule: str
    rule_text: str | None  # the decision rule in words; None for a rule without a description
    power: Power | None
    patients: PatientCount | None


@dataclass(frozen=True)
class Summary:
    """The summary table's values (the leakage test's come from the verdict)."""

    n_real: int
    n_generated: int
    n_patients: int | None
    n_reference_set: int
    n_labelled_reference: int
    method: str
    metric: str
    rule: str
    threshold: object
    n_labelled: int
    seed: str
    skipped: tuple[int, int, int]  # files skipped: real, generated, reference
    alignment: str | None = None  # what the alignment gate of the thumbnail view did (None: no such view)
    registration: str | None = None  # what the per-image registration found (None: it did not run)
    overlap: str | None = None  # duplicates across or within the sets, in words (None: none found)


@dataclass(frozen=True)
class MetricsTable:
    """Metrics on the labelled images: column titles, then (metric, value per column) rows."""

    columns: list[str]
    rows: list[tuple[str, list[object]]]


@dataclass(frozen=True)
class LabelledPatients:
    """Metrics of the patient decisions on the labelled candidate patients."""

    n: int
    accuracy: float
    precision: float
    recall: float
    auc: float


@dataclass(frozen=True)
class PatientRow:
    """One row of the patients table."""

    patient: str
    images: int
    images_used: int
    studies: int
    series: int
    score: float
    p_value: float | None
    q_value: float | None
    decision: str  # "flagged" is highlighted
    label: object  # the patient's label, '–' when unlabelled


@dataclass(frozen=True)
class PatientsSection:
    """The patients section: counts, the patient-level verdict when calibrated, the table."""

    n_patients: int
    n_reference: int
    aggregation: str
    ungrouped: int
    calibrated: bool
    inconclusive: bool  # the reference check failed: no patient is calibrated
    fdr: float
    counts: PatientCount | None  # None: no candidate patient has a p-value
    labelled: LabelledPatients | None
    used_head: str
    p_columns: bool
    label_column: bool
    rows: list[PatientRow]
    listing_note: str | None  # which patients the table leaves out


@dataclass(frozen=True)
class Neighbour:
    """A generated image beside a real one in the gallery."""

    id: str
    similarity: float
    src: str


@dataclass(frozen=True)
class GalleryRow:
    """A high-scoring real image, its decision and its nearest generated images."""

    rank: int
    id: str
    score: float
    p_value: float
    q_value: float
    flagged: bool
    used: bool
    label: str | None  # 'used' or 'not used' when labelled
    patient: str | None
    src: str
    neighbours: list[Neighbour]
    registered: RegisteredCopy | None = None


@dataclass(frozen=True)
class Gallery:
    """The most at-risk real images (candidates only when there is a reference)."""

    calibrated: bool
    candidates_only: bool  # a reference exists (calibrated or inconclusive): its images are not shown
    by_fdr: bool
    n_shown: int
    rows: list[GalleryRow]


@dataclass(frozen=True)
class ReportContext:
    """Everything the template shows."""

    title: str
    subtitle: str | None
    risk: bool  # only a calibrated audit that detected leakage is framed as a risk
    verdict: Verdict
    summary: Summary
    plots: list[Plot]
    evidence: CheckEvidence | None  # the failed reference check's evidence (inconclusive audits)
    metrics: MetricsTable | None
    patients: PatientsSection | None
    gallery: Gallery


def _leakage(data: dict[str, Any]) -> Leakage | None:
    """The leakage test's numbers; None when the audit is uncalibrated."""
    leak = leakage_of(data)
    if leak is None:
        return None
    n_ref, n_cand = int(leak["n_reference"]), int(leak["n_candidates"])
    fdr = target_fdr(data)
    share_ci = leak.get("used_share_ci") or [math.nan, math.nan]
    detected = bool(leak["detected"])
    return Leakage(
        detected=detected,
        verdict=str(leak.get("verdict") or ("detected" if detected else "not_detected")),
        p_value=leak["p_value"],
        test=_TESTS.get(str(leak.get("test", "")), str(leak.get("test", ""))),
        fdr=fdr,
        level=float(leak.get("level", 0.05)),
        confidence=float(leak.get("confidence", 0.95)),
        n_candidates=int(leak["n_candidates"]),
        n_reference=n_ref,
        n_flagged=int(leak["n_flagged"]),
        lower_bound=int(leak["used_count_lower_bound"]),
        min_p=1.0 / (n_ref + 1),
        smallest_p=leak.get("min_p_value", 1.0 / (n_ref + 1)),
        share_lower=share_ci[0],
        share_estimate=leak.get("used_share_estimate"),
        too_small=bool(leak.get("reference_too_small", 1.0 / (n_ref + 1) > fdr)),
        min_reference_size=_min_reference_size(leak, fdr, n_cand),
    )


def _min_reference_size(leak: Mapping[str, Any], fdr: float, n_candidates: int) -> int | None:
    """The reference size Benjamini-Hochberg needs to flag anything (metrics.json's, else computed)."""
    if leak.get("min_reference_size") is not None:
        return int(leak["min_reference_size"])
    from synthaudit.models.calibration import min_reference_size

    try:
        return min_reference_size(fdr, n_candidates, n_candidates)
    except ValueError:
        return None


def _reference_check(data: dict[str, Any]) -> ReferenceCheck | None:
    """The reference check's record for people; None without a reference."""
    check = reference_check_of(data)
    if check is None:
        return None
    return ReferenceCheck(
        test=str(check.get("test", "")),
        passed=check.get("passed"),
        p_value=check.get("p_value"),
        auc=check.get("statistic"),
        level=float(check.get("level", 0.01)),
        units=int(check.get("units", 0)),
        pairs=int(check.get("pairs") or 0),
        grouping=str(check.get("grouping", "")),
        features=str(check.get("features", "")),
        evidence=describe_evidence(check),
        message=str(check.get("message", "")),
    )


def _inconclusive(data: dict[str, Any], check: ReferenceCheck | None) -> Inconclusive | None:
    """The inconclusive verdict's numbers; None unless the reference check failed."""
    leak = inconclusive_of(data)
    if leak is None:
        return None
    return Inconclusive(
        n_candidates=int(leak["n_candidates"]),
        n_reference=int(leak["n_reference"]),
        fdr=target_fdr(data),
        check=check,
    )


def blind_score_plot(reference: np.ndarray, candidates: np.ndarray) -> str:
    """The reference check's held-out blind scores, reference vs candidates, each normalised to its size:
    two humps apart mean the reference was drawn differently (the generated images play no part)."""
    fig, ax = _new_figure(5.0, 3.4)
    n_bins = int(np.clip(2 * math.sqrt(len(candidates) + len(reference)), 10, 40))
    bins = _score_bins([candidates, reference], None, n_bins)
    density_histograms(ax, reference, candidates, bins, "reference images")
    ax.set_xlabel("blind score (higher = more like the reference), without the generated images")
    ax.set_ylabel("density (each set's area = 1)")
    ax.set_title("Reference check: reference vs candidate images")
    ax.legend(frameon=False, fontsize=8)
    return _figure_png(fig)


def _check_evidence(data: dict[str, Any], examples: int = CHECK_EXAMPLES) -> CheckEvidence | None:
    """The failed check's evidence: blind-score histogram, and the reference images the check finds most
    reference-like beside the candidates it finds most candidate-like. None when not inconclusive or when
    the blind scores are missing (a work folder from before the check)."""
    blind = data.get("blind")
    if inconclusive_of(data) is None or not blind:
        return None
    scores, is_ref = blind["blind_scores"], blind["is_reference"]
    plot = Plot(
        "reference-check-histogram",
        "blind scores of the reference images and of the candidates",
        blind_score_plot(scores[is_ref], scores[~is_ref]),
    )
    pool = data["pool"]

    def pick(mask: np.ndarray, highest: bool) -> list[Example]:
        idx = np.flatnonzero(mask & np.isfinite(scores))
        order = idx[np.argsort(-scores[idx] if highest else scores[idx], kind="stable")][:examples]
        return [Example(thumbnail(pool[i]), float(scores[i])) for i in order]

    return CheckEvidence(plot, pick(is_ref, True), pick(~is_ref, False))


def _patient_count(patients: list[PatientResult] | None, fdr: float) -> PatientCount | None:
    """The patient-level counts; None when no candidate patient has a p-value."""
    tested = [p for p in patients or [] if p.p_value is not None]
    if not tested:
        return None
    return PatientCount(
        tested=len(tested),
        flagged=sum(1 for p in tested if p.q_value is not None and p.q_value <= fdr),
        n_reference=sum(1 for p in patients or [] if p.role == "reference"),
    )


def _verdict(data: dict[str, Any], leak: Leakage | None, patients: list[PatientResult] | None) -> Verdict:
    """The verdict's numbers."""
    m = data["metrics"]
    check = _reference_check(data)
    rule = str(m.get("decision_rule", ""))
    frac = _pct(float(data["config"].get("used_fraction", 0.5)))
    power = m.get("power") if leak else None
    return Verdict(
        leak=leak,
        inconclusive=_inconclusive(data, check),
        check=check,
        n_real=len(data["real_ids"]),
        n_generated=len(data["generated_ids"]),
        method=_method_of(data),
        rule=rule,
        rule_text=_RULES[rule].format(frac=frac) if rule in _RULES else None,
        power=(
            Power(int(power["n_known_used"]), int(power["flagged"]), power.get("recall")) if power else None
        ),
        patients=_patient_count(patients, leak.fdr) if leak else None,
    )


def _summary(data: dict[str, Any], patients: list[PatientResult] | None) -> Summary:
    """The summary table's values."""
    m, c, rej = data["metrics"], data["config"], data["rejected"] or {}
    return Summary(
        n_real=len(data["real_ids"]),
        n_generated=len(data["generated_ids"]),
        n_patients=None if patients is None else len(patients),
        n_reference_set=len(data["reference_set_ids"]),
        n_labelled_reference=int((~candidate_mask(data)).sum()),
        method=_method_of(data),
        metric=str(c.get("metric", "cosine")),
        rule=str(m.get("decision_rule", "?")),
        threshold=m.get("threshold"),
        n_labelled=int(m.get("n_labelled", 0)),
        seed=str(c.get("seed", "–")),
        skipped=(len(rej.get("real", [])), len(rej.get("generated", [])), len(rej.get("reference", []))),
        alignment=_alignment_text(m.get("alignment")),
        registration=registration_text(m.get("alignment"), m.get("registered_copies")),
        overlap=_overlap_text(m.get("reference_overlap")),
    )


def _method_of(data: dict[str, Any]) -> str:
    """The method as the audit was given it, and what ran (models.methods.method_label)."""
    ran = str(data["metrics"].get("method", "?"))
    return method_label(str(data["config"].get("method") or ran), ran)


def _overlap_text(overlap: dict[str, Any] | None) -> str | None:
    """Duplicates the decode stage found (models/reference_overlap.py), counted, never named."""
    if not overlap:
        return None
    parts = []
    if overlap.get("dropped_candidates"):
        parts.append(
            f"{overlap['dropped_candidates']:,} candidate image(s) repeated reference images and were left out of "
            "the audit (drop_reference_duplicates)"
        )
    if overlap.get("duplicates_within_real"):
        parts.append(
            f"{overlap['duplicates_within_real']:,} real image(s) repeat the pixels of another real image"
        )
    if overlap.get("duplicates_within_reference"):
        parts.append(
            f"{overlap['duplicates_within_reference']:,} reference image(s) repeat the pixels of another reference image"
        )
    return "; ".join(parts) or None


def _alignment_text(record: dict[str, Any] | None) -> str | None:
    """The alignment gate in words (models/alignment.py), from the decide summary's record."""
    if not record:
        return None
    if record.get("setting") == "off":
        return "switched off (alignment: off): the thumbnails are compared as they are"
    views = record.get("views") or {}
    if not views:
        return None
    share = max(float(v["share"]) for v in views.values())
    limit = float(record.get("gate_share", 0.01))
    found = f"{share:.1%} of the generated images are at least twice as close to a shifted, rotated or scaled real image"
    searched = max(int(v.get("versions", 9 if v["fired"] else 1)) for v in views.values())
    if any(v["fired"] for v in views.values()):
        return f"on: {found} (more than {limit:.0%}), so each real image was compared in {searched} such versions"
    probe = max((float(v["probe_share"]) for v in views.values() if "probe_share" in v), default=None)
    if probe is None:  # a work folder from before the probe
        return f"not used: {found} (it is used above {limit:.0%})"
    turn, resize = max(PROBE_ANGLES), max(abs(z - 1) for z in PROBE_ZOOMS)
    wider = f"{probe:.1%} are as close to a real image shifted twice as far, turned by {turn:g}° or resized by {resize * 100:.0f} %"
    if any(v.get("probe_fired") for v in views.values()):
        return f"on, wider: {found}, but {wider} (more than {limit:.0%}), so each real image was compared in {searched} such versions"
    return f"not used: {found}, and {wider} (it is used above {limit:.0%})"


def _plots(data: dict[str, Any], labels: Mapping[str, int] | None) -> list[Plot]:
    """The score plots: candidates vs reference and p-values if calibrated, else scores; ROC if labelled."""
    ids, m = data["real_ids"], data["metrics"]
    threshold = float(m.get("threshold", math.nan))
    label_of = np.array([labels.get(i, -1) if labels else -1 for i in ids], dtype=np.int64)
    leak = leakage_of(data)
    out = []
    if leak is not None:
        cand = candidate_mask(data)
        flagged = flagged_mask(data)
        by_fdr = m.get("decision_rule") == "fdr"
        line = threshold if not by_fdr or flagged.any() else None
        line_label = "lowest flagged score" if by_fdr else "rule's threshold"
        cutoff = float(np.nanmax(data["p_values"][flagged])) if flagged.any() else None
        distributions = candidate_reference_plot(
            data["scores"][cand], reference_scores(data), line, line_label
        )
        histogram = p_value_histogram(data["p_values"][cand], int(leak["n_reference"]), cutoff)
        out += [
            Plot("candidate-vs-reference", "candidate and reference score distributions", distributions),
            Plot("p-value-histogram", "histogram of the candidate p-values", histogram),
        ]
    else:
        histogram = score_histogram(data["scores"], threshold, label_of if labels else None)
        out.append(Plot("score-histogram", "score distribution with the rule threshold", histogram))
    labelled = label_of >= 0
    y = label_of[labelled]
    if labels and y.size and len(set(y.tolist())) == 2:
        decisions = None if leak else data["used"][labelled]
        roc = roc_plot(y, data["scores"][labelled], decisions)
        out.append(Plot("roc-curve", "ROC curve on the labelled images", roc))
    return out


def _metrics_table(labelled: dict[str, Any] | None) -> MetricsTable | None:
    """The metrics on the labelled images (as applied, cross-validated); None when there are none."""
    if not labelled or not (labelled.get("applied") or labelled.get("cross_validated")):
        return None
    columns = []
    if labelled.get("applied"):
        columns.append(("applied", "decisions as applied"))
    if labelled.get("cross_validated"):
        columns.append(("cross_validated", f"{labelled.get('cv_folds', '')}-fold cross-validated F1 rule"))
    rows = [
        (
            name.upper() if len(name) == 2 else name.replace("_", " "),
            [(labelled.get(key) or {}).get(name) for key, _ in columns],
        )
        for name in (*_METRIC_ROWS, "tp", "fp", "tn", "fn")
    ]
    return MetricsTable([title for _, title in columns], rows)


def _labelled_patients(
    patients: list[PatientResult], patient_labels: Mapping[str, int] | None
) -> LabelledPatients | None:
    """The patient decisions' metrics on the labelled candidate patients; None when none is labelled."""
    from synthaudit.models.metrics import classification_metrics

    known = [p for p in patients if patient_labels and p.patient in patient_labels and p.role != "reference"]
    if not patient_labels or not known:
        return None
    y = np.array([int(patient_labels[p.patient]) for p in known])
    result = classification_metrics(y, np.array([p.used for p in known]), np.array([p.score for p in known]))
    return LabelledPatients(
        len(known), result["accuracy"], result["precision"], result["recall"], result["auc"]
    )


def _patient_decision(p: PatientResult, by_fdr: bool) -> str:
    """A patient's decision as the table states it."""
    if p.role == "reference":
        return "reference (known not used)"
    if not by_fdr:
        return f"rule: {'used' if p.used else 'not marked used'}"
    return "flagged" if p.used else "not flagged"


def _patients_section(
    data: dict[str, Any],
    patients: list[PatientResult],
    patient_labels: Mapping[str, int] | None,
    aggregation: str,
    ungrouped: int,
) -> PatientsSection:
    """The patients section of the page."""
    calibrated = leakage_of(data) is not None
    fdr = target_fdr(data)
    counts = _patient_count(patients, fdr)
    by_rule_fdr = data["metrics"].get("decision_rule") == "fdr"
    by_fdr = calibrated and by_rule_fdr
    listed = [p for p in patients if p.role != "reference"] if counts else patients
    shown = listed[: GALLERY_ROWS * 2]
    notes = []
    if len(listed) > len(shown):
        notes.append(
            f"The {len(shown)} highest-scoring of {len(listed)} {'candidate ' if counts else ''}patients"
        )
    if len(listed) < len(patients):
        notes.append(f"the {len(patients) - len(listed):,} reference patients are not listed")
    note = "; ".join(notes)
    rows = [
        PatientRow(
            patient=p.patient,
            images=p.images,
            images_used=p.images_used,
            studies=p.studies,
            series=p.series,
            score=p.score,
            p_value=p.p_value,
            q_value=p.q_value,
            decision=_patient_decision(p, by_fdr),
            label=patient_labels.get(p.patient, "–") if patient_labels else "–",
        )
        for p in shown
    ]
    return PatientsSection(
        n_patients=len(patients),
        n_reference=sum(1 for p in patients if p.role == "reference"),
        aggregation=aggregation,
        ungrouped=ungrouped,
        calibrated=calibrated,
        inconclusive=inconclusive_of(data) is not None,
        fdr=fdr,
        counts=counts,
        labelled=_labelled_patients(patients, patient_labels),
        used_head="images flagged" if by_rule_fdr else "images used by the rule",
        p_columns=counts is not None,
        label_column=bool(patient_labels),
        rows=rows,
        listing_note=f"{note[0].upper()}{note[1:]}" if note else None,
    )


def _gallery(
    data: dict[str, Any], rows: int, neighbours: int, labels: Mapping[str, int] | None, groups: Groups | None
) -> Gallery:
    """The highest-scoring real images (candidates only when calibrated) beside their nearest generated."""
    ids, scores, used = data["real_ids"], data["scores"], data["used"]
    calibrated = leakage_of(data) is not None
    candidates_only = calibrated or inconclusive_of(data) is not None
    flagged = flagged_mask(data)
    shown = np.flatnonzero(candidate_mask(data)) if candidates_only else np.arange(len(ids))
    gen_pos = {g: j for j, g in enumerate(data["generated_ids"])}
    order = sorted(
        shown.tolist(), key=lambda i: (-scores[i] if math.isfinite(scores[i]) else math.inf, ids[i])
    )
    out = []
    for rank, i in enumerate(order[:rows], start=1):
        image_id = ids[i]
        label = None if not labels or image_id not in labels else ("used" if labels[image_id] else "not used")
        nearest = [
            Neighbour(gen_id, sim, thumbnail(data["generated"][gen_pos[gen_id]]))
            for gen_id, sim in data["evidence"].get(image_id, [])[:neighbours]
            if gen_id in gen_pos
        ]
        out.append(
            GalleryRow(
                rank=rank,
                id=image_id,
                score=float(scores[i]),
                p_value=float(data["p_values"][i]),
                q_value=float(data["q_values"][i]),
                flagged=bool(flagged[i]),
                used=bool(used[i]),
                label=label,
                patient=patient_of(groups[image_id]) if groups and image_id in groups else None,
                src=thumbnail(data["real"][i]),
                neighbours=nearest,
                registered=registered_copy(data, i),
            )
        )
    return Gallery(
        calibrated=calibrated,
        candidates_only=candidates_only,
        by_fdr=data["metrics"].get("decision_rule") == "fdr",
        n_shown=min(rows, len(shown)),
        rows=out,
    )


def report_context(
    workdir: str | Path,
    *,
    labels: Mapping[str, int] | None = None,
    groups: Groups | None = None,
    reference_groups: Groups | None = None,
    aggregation: str = "any",
    patient_labels: Mapping[str, int] | None = None,
    title: str = "Training-data leakage audit",
    subtitle: str | None = None,
    gallery_rows: int = GALLERY_ROWS,
    gallery_neighbours: int = GALLERY_NEIGHBOURS,
) -> ReportContext:
    """What the report of a finished work folder shows.

    labels: image id -> 1 used / 0 not; groups: patient keys of the real images; reference_groups: of the
    reference set's images (optional); aggregation: "any" or "mean-score"; patient_labels: patient -> label.
    """
    data = load_report_data(workdir)
    leak = _leakage(data)
    patients = None
    ungrouped = 0
    if groups:
        patients = patient_results(data, groups, reference_groups, aggregation) or None
        ungrouped = sum(1 for i in data["real_ids"] if not (groups.get(i) and patient_of(groups[i])))
    return ReportContext(
        title=title,
        subtitle=subtitle or None,
        risk=bool(leak and leak.detected),
        verdict=_verdict(data, leak, patients),
        summary=_summary(data, patients),
        plots=_plots(data, labels),
        evidence=_check_evidence(data),
        metrics=_metrics_table(data["metrics"].get("labelled")),
        patients=(
            _patients_section(data, patients, patient_labels, aggregation, ungrouped) if patients else None
        ),
        gallery=_gallery(data, gallery_rows, gallery_neighbours, labels, groups),
    )


# --- rendering --------------------------------------------------------------------------------------

_ENV = Environment(
    loader=PackageLoader("synthaudit.models", "templates"),
    autoescape=True,
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters.update(num=_num, pct=_pct)
_ENV.globals.update(p_value_parts=p_value_parts)


def render_context(context: ReportContext) -> str:
    """The report page of a context, rendered from the template."""
    template = _ENV.get_template("report.html.j2")
    return template.render({f.name: getattr(context, f.name) for f in fields(context)})


def render_report(workdir: str | Path, **options: Any) -> str:
    """The report of a finished work folder as one HTML string (images inline, no scripts, no links out);
    options are those of report_context."""
    return render_context(report_context(workdir, **options))


def write_report(workdir: str | Path, out: str | Path, **options: Any) -> Path:
    """Render the report of a work folder and write it (atomically, 0600) to out."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out, render_report(workdir, **options).encode("utf-8"))
    return out
