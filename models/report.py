"""The audit report: one self-contained HTML page (inline PNGs, no scripts) from a finished work folder.

Pure: reads `images.npz` (the real pool: real images, then any reference-set images), `results.csv`,
`reference.csv`, `metrics.json`, `config.json`, `rejected.json` and the real images' nearest-neighbour
evidence (`models.stages.read_evidence`); labels and patient groups are passed in. Plots are in
`models.report_plots`. The page embeds thumbnails of the audited images: it is as confidential as the
images themselves. Every text that comes from the inputs (ids are file names) is escaped.

Calibrated audits (images known not to be used exist) lead with the leakage test; uncalibrated ones
say that the ranking is all they give, state no count as a finding and show no risk frame.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from models.groups import (
    GroupKeys,
    PatientResult,
    aggregate_patients,
    calibrate_patients,
    reference_patients,
)
from models.report_plots import (
    candidate_reference_plot,
    p_value_histogram,
    roc_plot,
    score_histogram,
    thumbnail,
)

GALLERY_ROWS = 12
GALLERY_NEIGHBOURS = 4
_METRIC_ROWS = ("accuracy", "precision", "recall", "specificity", "f1", "auc", "tpr_at_1pct_fpr")
_RULES = {
    "fdr": "the Benjamini-Hochberg rule at the target false discovery rate (the flagged images)",
    "calibrated": "the F1-optimal threshold on the labelled images",
    "prior": "the 'prior' rule, which marks the top {frac} of the scores as used whatever the evidence",
    "mixture": "the 'mixture' rule, where a two-component mixture fitted to the scores splits them",
    "fixed": "a threshold fixed by the user",
}
_ASSUMPTION = (
    "These guarantees hold only when the reference images are drawn like the candidate images that were "
    "not used: a random hold-out set aside before the generator was trained. Reference images from another "
    "scanner, site or period break them (their scores can differ for reasons unrelated to training)."
)
_HOW_TO_CALIBRATE = (
    "hold out real images known not to be in the training set (ideally a random sample set aside before the "
    "generator was trained) and audit again with them: as a reference set (<code>--reference DIR</code>) or "
    "as labels with <code>used=0</code> (<code>--labels</code>, or the audit's <code>labels</code> in the API)"
)
_CSS = """
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d232b;margin:0;background:#fff}
main{max-width:1080px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #dde3ea;padding-bottom:4px}
.sub{color:#5b6673;margin:0 0 16px}
.verdict{background:#f4f7fb;border-left:5px solid #2f6fb3;padding:12px 16px;font-size:16px}
.verdict.risk{border-left-color:#c0392b;background:#fdf4f3}
.verdict .lead{font-size:17px;font-weight:600;display:block;margin-bottom:6px}
.note{background:#fff8e6;border-left:5px solid #e0a100;padding:8px 14px;margin:12px 0}
table{border-collapse:collapse;margin:8px 0} td,th{padding:4px 10px;border-bottom:1px solid #e6eaef;text-align:left}
th{background:#f4f6f8;font-weight:600} td.n{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:16px} .plots img{max-width:100%;border:1px solid #e6eaef}
.row{display:flex;align-items:flex-start;gap:10px;padding:8px 0;border-bottom:1px solid #eef1f4}
.meta{width:170px;font-size:13px;flex:none} .meta b,.meta code{font-size:13px;word-break:break-all}
figure{margin:0;text-align:center;font-size:12px;color:#3b4651} figure img{display:block;border:1px solid #ccd3db;image-rendering:pixelated}
figure.real img{border:2px solid #c0392b} .used{color:#c0392b;font-weight:600} .gap{width:14px}
footer{margin-top:32px;color:#5b6673;font-size:13px}
"""


# --- reading the work folder --------------------------------------------------------------------


def _read_json(path: Path, default: Any = None) -> Any:
    return json.loads(path.read_text()) if path.exists() else default


def _nan_if_none(values: list[float | None]) -> np.ndarray:
    return np.array([math.nan if v is None else v for v in values], dtype=np.float64)


def load_report_data(workdir: str | Path) -> dict[str, Any]:
    """Everything the report shows, read from a finished work folder. `real_*` cover the real images
    only (not the reference set, whose ids may even repeat real ones); `reference_set_*` the reference
    set's images (known not used, scored like the real ones)."""
    from models.results import read_results_csv
    from models.stages import load_decoded, load_reference_mask, read_evidence

    workdir = Path(workdir)
    pool, generated = load_decoded(workdir)
    real_pos = np.flatnonzero(~load_reference_mask(workdir))
    real_ids = [pool.ids[i] for i in real_pos]
    rows = {r.id: r for r in read_results_csv(workdir / "results.csv")}
    missing = [i for i in real_ids if i not in rows]
    if missing:
        raise ValueError(f"results.csv lacks {len(missing)} real image(s), e.g. {missing[0]!r}")
    real_rows = [rows[i] for i in real_ids]
    reference_csv = workdir / "reference.csv"
    reference_rows = read_results_csv(reference_csv) if reference_csv.exists() else []
    return {
        "real_ids": real_ids,
        "real": pool.images[real_pos],
        "generated_ids": generated.ids,
        "generated": generated.images,
        "scores": np.array([r.score for r in real_rows], dtype=np.float64),
        "used": np.array([r.used for r in real_rows], dtype=np.int64),
        "p_values": _nan_if_none([r.p_value for r in real_rows]),
        "q_values": _nan_if_none([r.q_value for r in real_rows]),
        "roles": [r.role for r in real_rows],
        "reference_set_ids": [r.id for r in reference_rows],
        "reference_set_scores": np.array([r.score for r in reference_rows], dtype=np.float64),
        "evidence": read_evidence(workdir, reference=False),
        "metrics": _read_json(workdir / "metrics.json", {}),
        "config": _read_json(workdir / "config.json", {}),
        "rejected": _read_json(workdir / "rejected.json", {}),
    }


def leakage_of(data: dict[str, Any]) -> dict[str, Any] | None:
    """The leakage test of a calibrated audit; None when it is uncalibrated."""
    m = data["metrics"]
    leak = m.get("leakage")
    return leak if leak and m.get("calibrated", True) else None


def target_fdr(data: dict[str, Any]) -> float:
    leak = data["metrics"].get("leakage") or {}
    return float(data["metrics"].get("fdr") or leak.get("fdr") or 0.1)


def flagged_mask(data: dict[str, Any]) -> np.ndarray:
    """The candidates Benjamini-Hochberg flags: the decisions under the fdr rule (exactly the engine's),
    q <= fdr under the other rules of a calibrated audit; none when uncalibrated."""
    if leakage_of(data) is None:
        return np.zeros(len(data["real_ids"]), dtype=bool)
    if data["metrics"].get("decision_rule") == "fdr":
        return candidate_mask(data) & (data["used"] == 1)
    return np.nan_to_num(data["q_values"], nan=1.0) <= target_fdr(data)


def candidate_mask(data: dict[str, Any]) -> np.ndarray:
    return np.array([role != "reference" for role in data["roles"]], dtype=bool)


def reference_scores(data: dict[str, Any]) -> np.ndarray:
    """Scores of every reference image: real images labelled not used, then the reference set."""
    labelled_reference = data["scores"][~candidate_mask(data)]
    return np.concatenate([labelled_reference, data["reference_set_scores"]])


# --- text -----------------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return f"{float(value):.{digits}f}"


def _pct(value: float) -> str:
    """A share as a percentage: 0.1 -> '10 %', 0.025 -> '2.5 %'."""
    return f"{100.0 * float(value):.3g} %"


def format_p(p: float | None) -> str:
    """A p-value for people: 3 significant digits, powers of ten (HTML) below 0.001."""
    if p is None or not math.isfinite(p):
        return "–"
    if p >= 1e-3:
        return f"{p:.3g}"
    mantissa, exponent = f"{p:.1e}".split("e")
    return f"{mantissa} × 10<sup>−{abs(int(exponent))}</sup>"


def _test_name(leak: dict[str, Any]) -> str:
    test = str(leak.get("test", ""))
    return {"mann-whitney-exact": "exact", "mann-whitney-normal": "normal approximation"}.get(test, _e(test))


def _rule_text(rule: str, config: dict[str, Any]) -> str:
    frac = _pct(float(config.get("used_fraction", 0.5)))
    return _RULES.get(rule, "the rule <code>{rule}</code>").format(frac=frac, rule=_e(rule))


def _patient_sentence(patients: list[PatientResult] | None, fdr: float) -> str:
    tested = [p for p in patients or [] if p.p_value is not None]
    if not tested:
        return ""
    n_ref = sum(1 for p in patients or [] if p.role == "reference")
    flagged = sum(1 for p in tested if p.q_value is not None and p.q_value <= fdr)
    return (
        f" At the patient level, <b>{flagged:,} of {len(tested):,} candidate patients</b> are flagged at the same "
        f"false discovery rate (patient p-values against {n_ref:,} reference patients)."
    )


def verdict_html(
    data: dict[str, Any], patients: list[PatientResult] | None = None, aggregation: str = "any"
) -> tuple[str, bool]:
    """The verdict (HTML) and whether it signals a risk: only a calibrated audit that detected
    leakage does; an uncalibrated audit states no count as a finding."""
    leak = leakage_of(data)
    if leak is None:
        return _uncalibrated_verdict(data), False
    m = data["metrics"]
    fdr = target_fdr(data)
    n_cand, n_ref = int(leak["n_candidates"]), int(leak["n_reference"])
    flagged, lower = int(leak["n_flagged"]), int(leak["used_count_lower_bound"])
    confidence, level = float(leak.get("confidence", 0.95)), float(leak.get("level", 0.05))
    counts = (
        f"at a false discovery rate of {_pct(fdr)}, {flagged:,} of {n_cand:,} candidate images are flagged; "
        f"at least {lower:,} were used ({_pct(confidence)} confidence)"
    )
    min_p = 1.0 / (n_ref + 1)
    if leak["detected"]:
        lead = f"Evidence of training-data leakage: p = {format_p(leak['p_value'])}; {counts}."
        caveat = (
            f" With {n_ref:,} reference images no image's p-value can be smaller than 1/{n_ref + 1:,} = "
            f"{format_p(min_p)}, so no single image can be flagged yet: more reference images say which images "
            "were used."
            if flagged == 0
            else ""
        )
    else:
        lead = (
            f"No evidence of training-data leakage was found at level {level:g} (p = {format_p(leak['p_value'])}); "
            f"{counts}."
        )
        caveat = (
            " This is not proof that the generated images are safe to share: the test's power depends on the "
            f"number of reference images, and there were {n_ref:,}, so no image's p-value can be smaller than "
            f"1/{n_ref + 1:,} = {format_p(min_p)}. More reference images give the test more power."
        )
    parts = [
        f"<span class=lead id=leakage-sentence>{lead}</span>",
        f"The p-value is a one-sided rank test (Mann-Whitney, {_test_name(leak)}) of the {n_cand:,} "
        f"candidate images' membership scores against those of {n_ref:,} reference images known not to be in the "
        f"training set of the generator that produced the {len(data['generated_ids']):,} generated images. "
        f"Each candidate also gets a p-value against the reference; the flagged images are those the "
        f"Benjamini-Hochberg rule selects, so that on average at most {_pct(fdr)} of them were in fact not used. "
        f"The lower bound on the number of used candidates holds with {_pct(confidence)} confidence whatever "
        "the used images score (it is conservative: the flags control the share of errors, the bound the count)."
        + caveat,
    ]
    if lower > flagged:
        parts.append(
            f"At least {lower:,} candidates were used, but only {flagged:,} can be named individually at this "
            "false discovery rate: the others score within the range of the reference images."
        )
    power = m.get("power")
    if power:
        parts.append(
            f"Of the {int(power['n_known_used']):,} images labelled used, {int(power['flagged']):,} are flagged "
            f"(recall {_num(power.get('recall'))}): how much this audit finds on this data."
        )
    parts[-1] += _patient_sentence(patients, fdr)
    rule = str(m.get("decision_rule", ""))
    if rule != "fdr":
        parts.append(
            f"The <code>used</code> column of results.csv follows {_rule_text(rule, data['config'])} instead of "
            "the flags."
        )
    parts.append(f"<i>{_ASSUMPTION}</i>")
    return " ".join(parts), bool(leak["detected"])


def _uncalibrated_verdict(data: dict[str, Any]) -> str:
    m = data["metrics"]
    rule = str(m.get("decision_rule", ""))
    return (
        "<span class=lead id=leakage-sentence>Uncalibrated audit: the ranking is all this audit can give.</span> "
        "No images known not to be in the training set were given, so the membership scores (method "
        f"<code>{_e(m.get('method', '?'))}</code>) rank the {len(data['real_ids']):,} real images from most to least "
        "likely used against the "
        f"{len(data['generated_ids']):,} generated images, but no p-value, error rate or number of used images "
        f"follows from them. The <code>used</code> column of results.csv follows {_rule_text(rule, data['config'])}: "
        "a setting, not a finding. For a calibrated verdict (a leakage test, images flagged at a controlled false "
        f"discovery rate and a lower bound on how many were used), {_HOW_TO_CALIBRATE}."
    )


def _metrics_table(labelled: dict[str, Any]) -> str:
    columns = []
    if labelled.get("applied"):
        columns.append(("applied", "decisions as applied"))
    if labelled.get("cross_validated"):
        columns.append(("cross_validated", f"{labelled.get('cv_folds', '')}-fold cross-validated F1 rule"))
    head = "".join(f"<th>{_e(title)}</th>" for _, title in columns)
    body = []
    for name in (*_METRIC_ROWS, "tp", "fp", "tn", "fn"):
        cells = "".join(f"<td class=n>{_num((labelled.get(key) or {}).get(name))}</td>" for key, _ in columns)
        title = name.upper() if len(name) == 2 else name.replace("_", " ")
        body.append(f"<tr><th>{_e(title)}</th>{cells}</tr>")
    return f"<table class=metrics><tr><th>metric</th>{head}</tr>{''.join(body)}</table>"


def _summary_table(data: dict[str, Any], patients: list[PatientResult] | None) -> str:
    m, c, rej = data["metrics"], data["config"], data["rejected"] or {}
    leak = leakage_of(data)
    rows = [("real images audited", _num(len(data["real_ids"])))]
    if leak is not None:
        n_set = len(data["reference_set_ids"])
        n_labelled_ref = int((~candidate_mask(data)).sum())
        rows += [
            ("candidate images", _num(int(leak["n_candidates"]))),
            (
                "reference images (known not used)",
                (
                    f"{_num(int(leak['n_reference']))} ({n_set:,} from the reference set, "
                    f"{n_labelled_ref:,} real images labelled not used)"
                ),
            ),
        ]
    rows.append(("generated images", _num(len(data["generated_ids"]))))
    if patients is not None:
        rows.append(("patients", _num(len(patients))))
    rows += [
        ("method", _e(m.get("method", c.get("method", "?")))),
        ("similarity metric", _e(c.get("metric", "cosine"))),
        ("decision rule", _e(m.get("decision_rule", "?"))),
    ]
    if leak is not None:
        share_ci = leak.get("used_share_ci") or [math.nan, math.nan]
        rows += [
            ("target false discovery rate", _pct(target_fdr(data))),
            ("candidate images flagged", _num(int(leak["n_flagged"]))),
            ("leakage test p-value", f"{format_p(leak['p_value'])} (Mann-Whitney, {_test_name(leak)})"),
            (
                "smallest possible p-value",
                format_p(leak.get("min_p_value", 1.0 / (int(leak["n_reference"]) + 1))),
            ),
            (
                f"used candidates, lower bound ({_pct(float(leak.get('confidence', 0.95)))})",
                f"{_num(int(leak['used_count_lower_bound']))} (share ≥ {_num(share_ci[0])})",
            ),
            ("used share, point estimate (Storey; not a bound)", _num(leak.get("used_share_estimate"))),
            (
                (
                    "lowest flagged score",
                    _num(m.get("threshold"), 4) if int(leak["n_flagged"]) else "none flagged",
                )
                if m.get("decision_rule") == "fdr"
                else ("threshold", _num(m.get("threshold"), 4))
            ),
        ]
    else:
        rows.append(("rule's threshold (uncalibrated)", _num(m.get("threshold"), 4)))
    rows += [
        ("labelled images", _num(int(m.get("n_labelled", 0)))),
        ("seed", _e(c.get("seed", "–"))),
        (
            "files skipped (real / generated / reference)",
            f"{len(rej.get('real', []))} / {len(rej.get('generated', []))} / {len(rej.get('reference', []))}",
        ),
    ]
    return "<table id=summary>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


# --- patients -------------------------------------------------------------------------------------


def patient_results(
    data: dict[str, Any],
    groups: Mapping[str, GroupKeys | Mapping[str, str | None]],
    reference_groups: Mapping[str, GroupKeys | Mapping[str, str | None]] | None,
    aggregation: str,
) -> list[PatientResult]:
    """Per-patient results (as patients.csv); when the audit is calibrated, with patient-level p-values
    and q-values against the reference patients (all of whose images are reference images: real images labelled not
    used, and reference-set images whose groups are given in reference_groups). Reference-set images
    without groups are left out: then only labelled-not-used patients can be the reference. Under the
    fdr rule BH across patients decides `used`; under the other rules the image decisions do."""
    ids = list(data["real_ids"])
    scores = list(data["scores"])
    used = list(data["used"])
    roles = list(data["roles"])
    keys: dict[str, Any] = {i: groups[i] for i in ids if i in groups}
    for image_id, score in zip(data["reference_set_ids"], data["reference_set_scores"], strict=True):
        if reference_groups and image_id in reference_groups:
            internal = f"\x00reference/{image_id}"  # reference-set ids may repeat real ones
            keys[internal] = reference_groups[image_id]
            ids.append(internal)
            scores.append(score)
            used.append(0)
            roles.append("reference")
    threshold = float(data["metrics"].get("threshold", math.nan))
    patients = aggregate_patients(ids, np.array(scores), np.array(used), keys, threshold, aggregation)
    leak = leakage_of(data)
    if leak is None:
        return patients
    fdr = target_fdr(data)
    tested = calibrate_patients(patients, reference_patients(ids, roles, keys), fdr)
    if data["metrics"].get("decision_rule") == "fdr":
        return tested
    decided = {
        r.patient: r.used for r in patients
    }  # other rules: the image decisions decide, as patients.csv
    return [replace(r, used=decided[r.patient]) for r in tested]


def _patients_section(
    data: dict[str, Any],
    patients: list[PatientResult],
    patient_labels: Mapping[str, int] | None,
    aggregation: str,
    ungrouped: int,
) -> str:
    from models.metrics import classification_metrics

    calibrated = leakage_of(data) is not None
    tested = [p for p in patients if p.p_value is not None]
    rule_text = "any of their images" if aggregation == "any" else "their mean image score"
    n_ref = sum(1 for p in patients if p.role == "reference")
    split = f" ({len(patients) - n_ref:,} candidates, {n_ref:,} reference)" if n_ref else ""
    out = [
        f"<h2>Patients</h2><p>{len(patients):,} patients{split}; aggregation rule <code>{_e(aggregation)}</code> "
        f"(a patient's score is that of {rule_text})"
        + (f"; {ungrouped:,} real images without patient information are not counted" if ungrouped else "")
        + ".</p>"
    ]
    if tested:
        fdr = target_fdr(data)
        flagged = sum(1 for p in tested if p.q_value is not None and p.q_value <= fdr)
        out.append(
            f"<p id=patient-verdict><b>{flagged:,} of {len(tested):,} candidate patients are flagged</b> at a false "
            f"discovery rate of {_pct(fdr)}: each candidate patient's score gets a p-value against those of "
            f"{n_ref:,} reference patients (all of whose images are known not to be used), and Benjamini-Hochberg "
            "decides across patients. Valid when the reference patients are drawn like the not-used candidate "
            "patients, including how many images each has.</p>"
        )
    elif calibrated:
        out.append(
            "<p class=note>No patient is known not to be used (none has only reference images with patient "
            "information), so patients get no p-value: a patient counts as used when the aggregation of its "
            "images' decisions says so, without a patient-level error rate.</p>"
        )
    else:
        out.append(
            "<p class=note>Uncalibrated: patients are ranked by score; the decision column follows the image "
            "rule and is not a finding.</p>"
        )
    if patient_labels:
        known = [p for p in patients if p.patient in patient_labels and p.role != "reference"]
        if known:
            y = np.array([int(patient_labels[p.patient]) for p in known])
            result = classification_metrics(
                y, np.array([p.used for p in known]), np.array([p.score for p in known])
            )
            out.append(
                f"<p>On the {len(known)} labelled candidate patients: accuracy {_num(result['accuracy'])}, "
                f"precision {_num(result['precision'])}, recall {_num(result['recall'])}, "
                f"ROC AUC {_num(result['auc'])}.</p>"
            )
    listed = [p for p in patients if p.role != "reference"] if tested else patients
    shown = listed[: GALLERY_ROWS * 2]
    p_cols = bool(tested)

    by_fdr = calibrated and data["metrics"].get("decision_rule") == "fdr"

    def decision(p: PatientResult) -> str:
        if p.role == "reference":
            return "reference (known not used)"
        if not by_fdr:
            return f"rule: {'used' if p.used else 'not used'}"
        return "<span class=used>flagged</span>" if p.used else "not flagged"

    rows = "".join(
        f"<tr><td><code>{_e(p.patient)}</code></td><td class=n>{p.images}</td><td class=n>{p.images_used}</td>"
        f"<td class=n>{p.studies}</td><td class=n>{p.series}</td><td class=n>{p.score:.4f}</td>"
        + (f"<td class=n>{format_p(p.p_value)}</td><td class=n>{format_p(p.q_value)}</td>" if p_cols else "")
        + f"<td>{decision(p)}</td>"
        + (f"<td>{_e(patient_labels.get(p.patient, '–'))}</td>" if patient_labels else "")
        + "</tr>"
        for p in shown
    )
    p_head = "<th>p-value</th><th>q-value</th>" if p_cols else ""
    label_head = "<th>label</th>" if patient_labels else ""
    used_head = (
        "images flagged" if data["metrics"].get("decision_rule") == "fdr" else "images used by the rule"
    )
    out.append(
        f"<table id=patients><tr><th>patient (pseudonym)</th><th>images</th><th>{used_head}</th><th>studies</th>"
        f"<th>series</th><th>score</th>{p_head}<th>decision</th>{label_head}</tr>{rows}</table>"
    )
    notes = []
    if len(listed) > len(shown):
        notes.append(
            f"The {len(shown)} highest-scoring of {len(listed)} {'candidate ' if tested else ''}patients"
        )
    if len(listed) < len(patients):
        notes.append(f"the {len(patients) - len(listed):,} reference patients are not listed")
    if notes:
        text = "; ".join(notes)
        out.append(f"<p class=sub>{text[0].upper()}{text[1:]}; patients.csv has them all.</p>")
    return "".join(out)


# --- gallery --------------------------------------------------------------------------------------


def _gallery(
    data: dict[str, Any],
    rows: int,
    neighbours: int,
    labels: Mapping[str, int] | None,
    groups: Mapping[str, GroupKeys | Mapping[str, str | None]] | None = None,
) -> str:
    """The highest-scoring real images (candidates only when calibrated) beside their nearest generated."""
    ids, scores, used = data["real_ids"], data["scores"], data["used"]
    calibrated = leakage_of(data) is not None
    flagged = flagged_mask(data)
    by_fdr = data["metrics"].get("decision_rule") == "fdr"
    shown = np.flatnonzero(candidate_mask(data)) if calibrated else np.arange(len(ids))
    gen_pos = {g: j for j, g in enumerate(data["generated_ids"])}
    order = sorted(
        shown.tolist(), key=lambda i: (-scores[i] if math.isfinite(scores[i]) else math.inf, ids[i])
    )
    out = []
    for rank, i in enumerate(order[:rows], start=1):
        label = (
            ""
            if not labels or ids[i] not in labels
            else f"<br>label: {'used' if labels[ids[i]] else 'not used'}"
        )
        if calibrated:
            decision = (
                f"p {format_p(data['p_values'][i])} · q {format_p(data['q_values'][i])}<br>"
                + ("<span class=used>flagged</span>" if flagged[i] else "not flagged")
                + ("" if by_fdr else f"<br>rule: {'used' if used[i] else 'not used'}")
            )
        else:
            decision = f"rule: {'used' if used[i] else 'not used'}"
        patient = _patient_of(groups[ids[i]]) if groups and ids[i] in groups else None
        if patient:
            decision += f"<br>patient <code>{_e(patient)}</code>"
        figures = [
            (
                f"<figure class=real><img alt='real image {_e(ids[i])}' src='{thumbnail(data['real'][i])}'>"
                "<figcaption>real</figcaption></figure><div class=gap></div>"
            )
        ]
        for gen_id, sim in data["evidence"].get(ids[i], [])[:neighbours]:
            if gen_id not in gen_pos:
                continue
            figures.append(
                f"<figure><img alt='generated image {_e(gen_id)}' "
                f"src='{thumbnail(data['generated'][gen_pos[gen_id]])}'>"
                f"<figcaption>{_e(gen_id)}<br>sim {sim:.4f}</figcaption></figure>"
            )
        out.append(
            f"<div class=row data-real-id='{_e(ids[i])}'><div class=meta>#{rank} <b>{_e(ids[i])}</b><br>"
            f"score {scores[i]:.4f}<br>{decision}{label}</div>{''.join(figures)}</div>"
        )
    return "".join(out)


# --- the page -------------------------------------------------------------------------------------


def _plots(data: dict[str, Any], labels: Mapping[str, int] | None) -> list[str]:
    ids, m = data["real_ids"], data["metrics"]
    threshold = float(m.get("threshold", math.nan))
    label_of = np.array([labels.get(i, -1) if labels else -1 for i in ids], dtype=np.int64)
    leak = leakage_of(data)
    out = ["<h2>Scores</h2><div class=plots>"]
    if leak is not None:
        cand = candidate_mask(data)
        flagged = flagged_mask(data)
        by_fdr = m.get("decision_rule") == "fdr"
        line = threshold if not by_fdr or flagged.any() else None
        line_label = "lowest flagged score" if by_fdr else "rule's threshold"
        p = data["p_values"][cand]
        cutoff = float(np.nanmax(data["p_values"][flagged])) if flagged.any() else None
        distributions = candidate_reference_plot(
            data["scores"][cand], reference_scores(data), line, line_label
        )
        histogram = p_value_histogram(p, int(leak["n_reference"]), cutoff)
        out += [
            f"<img id=candidate-vs-reference alt='candidate and reference score distributions' src='{distributions}'>",
            f"<img id=p-value-histogram alt='histogram of the candidate p-values' src='{histogram}'>",
        ]
    else:
        out.append(
            f"<img id=score-histogram alt='score distribution with the rule threshold' "
            f"src='{score_histogram(data['scores'], threshold, label_of if labels else None)}'>"
        )
    labelled = label_of >= 0
    y = label_of[labelled]
    if labels and y.size and len(set(y.tolist())) == 2:
        out.append(
            f"<img id=roc-curve alt='ROC curve on the labelled images' "
            f"src='{roc_plot(y, data['scores'][labelled], None if leak else data['used'][labelled])}'>"
        )
    out.append("</div>")
    if leak is not None:
        out.append(
            "<p class=sub>Left: the candidates' scores against the reference images' (each set normalised to "
            "its size); used images show as candidate mass to the right. Right: the candidates' p-values; if "
            "no candidate were used they would follow the blue line, used ones pile up near 0.</p>"
        )
    return out


def render_report(
    workdir: str | Path,
    *,
    labels: Mapping[str, int] | None = None,
    groups: Mapping[str, GroupKeys | Mapping[str, str | None]] | None = None,
    reference_groups: Mapping[str, GroupKeys | Mapping[str, str | None]] | None = None,
    aggregation: str = "any",
    patient_labels: Mapping[str, int] | None = None,
    title: str = "Training-data leakage audit",
    subtitle: str | None = None,
    gallery_rows: int = GALLERY_ROWS,
    gallery_neighbours: int = GALLERY_NEIGHBOURS,
) -> str:
    """The report of a finished work folder as one HTML string (images inline, no scripts, no links out).

    groups: patient keys of the real images; reference_groups: of the reference set's images (optional).
    """
    data = load_report_data(workdir)
    ids = data["real_ids"]
    calibrated = leakage_of(data) is not None
    patients = None
    ungrouped = 0
    if groups:
        patients = patient_results(data, groups, reference_groups, aggregation) or None
        ungrouped = sum(1 for i in ids if not (groups.get(i) and _patient_of(groups[i])))
    verdict, risk = verdict_html(data, patients, aggregation)

    sections = [
        f"<h1>{_e(title)}</h1>",
        f"<p class=sub>{_e(subtitle)}</p>" if subtitle else "",
        f"<h2>Verdict</h2><p id=verdict class='verdict{' risk' if risk else ''}'>{verdict}</p>",
    ]
    if not calibrated and data["metrics"].get("decision_rule") == "prior":
        sections.append(
            "<p class=note>The 'prior' rule always marks about the assumed share of images as used, "
            "whatever the evidence: read the score distribution and the gallery as a ranking.</p>"
        )
    sections += ["<h2>Summary</h2>", _summary_table(data, patients), *_plots(data, labels)]
    labelled_metrics = data["metrics"].get("labelled")
    if labelled_metrics and (labelled_metrics.get("applied") or labelled_metrics.get("cross_validated")):
        sections += [
            "<h2>Metrics on the labelled images</h2>",
            _metrics_table(labelled_metrics),
            (
                "<p class=sub>“As applied” scores the audit's decisions on the labelled images (for a calibrated "
                "audit the known-used ones only: the known-not-used are the reference); the cross-validated "
                "column decides each image with an F1-optimal threshold fitted without it.</p>"
            ),
        ]
    if patients:
        sections.append(_patients_section(data, patients, patient_labels, aggregation, ungrouped))
    n_shown = min(gallery_rows, int(candidate_mask(data).sum()) if calibrated else len(ids))
    what = "candidate images" if calibrated else "real images"
    sections += [
        (
            f"<h2>Most at-risk real images</h2><p class=sub>The {n_shown} highest-scoring {what} (red frame), "
            "each beside its nearest generated images with their similarities"
            + ("; reference images are not shown" if calibrated else "")
            + ".</p>"
        ),
        f"<div id=gallery>{_gallery(data, gallery_rows, gallery_neighbours, labels, groups)}</div>",
        (
            "<footer>Made by synthaudit. This page embeds thumbnails of the audited images: share it only with "
            "people allowed to see them. Patient keys are pseudonyms (keyed hashes), never raw identifiers.</footer>"
        ),
    ]
    return (
        "<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
        "<meta http-equiv='Content-Security-Policy' content=\"default-src 'none'; img-src data:; "
        "style-src 'unsafe-inline'\">"
        "<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>{''.join(sections)}</main></body></html>"
    )


def _patient_of(keys: GroupKeys | Mapping[str, str | None]) -> str | None:
    return keys.patient if isinstance(keys, GroupKeys) else keys.get("patient")


def write_report(workdir: str | Path, out: str | Path, **options: Any) -> Path:
    """Render the report of a work folder and write it (atomically) to out."""
    import os
    import tempfile

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    text = render_report(workdir, **options)
    fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
