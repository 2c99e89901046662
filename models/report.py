"""The audit report: one self-contained HTML page (inline PNGs, no scripts) from a finished work folder.

Pure: reads `images.npz`, `results.csv`, `metrics.json`, `config.json`, `rejected.json` and the
nearest-neighbour evidence (`models.stages.read_evidence`); labels and patient groups are passed in.
The page embeds thumbnails of the audited images: it is as confidential as the images themselves.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from models.groups import GroupKeys, PatientResult, aggregate_patients

GALLERY_ROWS = 12
GALLERY_NEIGHBOURS = 4
THUMB_PX = 96
_METRIC_ROWS = ("accuracy", "precision", "recall", "specificity", "f1", "auc", "tpr_at_1pct_fpr")
_RULES = {
    "calibrated": "calibrated on the labelled images (the F1-optimal threshold)",
    "prior": "chosen without labels by the 'prior' rule, which assumes that {frac} of the real images were used",
    "mixture": "chosen without labels, where a two-component mixture fitted to the scores splits them",
    "fixed": "fixed by the user",
}
_CSS = """
body{font:15px/1.5 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1d232b;margin:0;background:#fff}
main{max-width:1080px;margin:0 auto;padding:24px 32px 48px}
h1{font-size:26px;margin:0 0 4px} h2{font-size:19px;margin:32px 0 8px;border-bottom:1px solid #dde3ea;padding-bottom:4px}
.sub{color:#5b6673;margin:0 0 16px}
.verdict{background:#f4f7fb;border-left:5px solid #2f6fb3;padding:12px 16px;font-size:16px}
.verdict.risk{border-left-color:#c0392b;background:#fdf4f3}
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


def load_report_data(workdir: str | Path) -> dict[str, Any]:
    """Everything the report shows, read from a finished work folder."""
    from models.results import read_results_csv
    from models.stages import load_decoded, read_evidence

    workdir = Path(workdir)
    real, generated = load_decoded(workdir)
    rows = {r.id: r for r in read_results_csv(workdir / "results.csv")}
    missing = [i for i in real.ids if i not in rows]
    if missing:
        raise ValueError(f"results.csv lacks {len(missing)} real image(s), e.g. {missing[0]!r}")
    return {
        "real_ids": real.ids,
        "real": real.images,
        "generated_ids": generated.ids,
        "generated": generated.images,
        "scores": np.array([rows[i].score for i in real.ids], dtype=np.float64),
        "used": np.array([rows[i].used for i in real.ids], dtype=np.int64),
        "evidence": read_evidence(workdir),
        "metrics": _read_json(workdir / "metrics.json", {}),
        "config": _read_json(workdir / "config.json", {}),
        "rejected": _read_json(workdir / "rejected.json", {}),
    }


# --- drawing ------------------------------------------------------------------------------------


def _png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_png(fig: Any) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return _png_data_uri(buf.getvalue())


def _new_figure(width: float, height: float) -> tuple[Any, Any]:
    """A figure without pyplot (no global state: safe in a server thread), Agg canvas."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(alpha=0.25)
    return fig, ax


def score_histogram(scores: np.ndarray, threshold: float, label_of: np.ndarray | None) -> str:
    """The real images' membership scores with the decision threshold (coloured by label when known)."""
    fig, ax = _new_figure(6.4, 3.6)
    finite = scores[np.isfinite(scores)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    lo, hi = min(lo, threshold), max(hi, threshold)
    bins = np.linspace(lo, hi + 1e-9 if hi == lo else hi, 41)
    if label_of is not None and (label_of >= 0).any():
        parts = [
            (scores[label_of == 1], "labelled used", "#c0392b"),
            (scores[label_of == 0], "labelled not used", "#2f6fb3"),
            (scores[label_of < 0], "unlabelled", "#a9b3bd"),
        ]
        parts = [p for p in parts if p[0].size]
        ax.hist(
            [p[0] for p in parts],
            bins=bins,
            stacked=True,
            label=[p[1] for p in parts],
            color=[p[2] for p in parts],
            edgecolor="white",
            linewidth=0.4,
        )
    else:
        ax.hist(scores, bins=bins, color="#6c8fb3", edgecolor="white", linewidth=0.4, label="real images")
    ax.axvspan(threshold, bins[-1], color="#c0392b", alpha=0.06)
    ax.axvline(threshold, color="#1d232b", linestyle="--", linewidth=1.5, label=f"threshold {threshold:.4f}")
    ax.set_xlabel("membership score (higher = more likely used)")
    ax.set_ylabel("real images")
    ax.set_title("Score distribution of the real images")
    ax.legend(frameon=False, fontsize=9)
    return _figure_png(fig)


def roc_plot(y: np.ndarray, scores: np.ndarray, decisions: np.ndarray) -> str:
    """ROC curve on the labelled images, with the operating point of the applied threshold."""
    from models.metrics import roc_auc, roc_curve

    fpr, tpr, _ = roc_curve(y, scores)
    auc = roc_auc(y, scores)
    fig, ax = _new_figure(4.4, 4.0)
    ax.plot([0, 1], [0, 1], color="#a9b3bd", linestyle=":", linewidth=1, label="chance")
    ax.plot(fpr, tpr, color="#2f6fb3", linewidth=2, label=f"ROC (AUC {auc:.3f})")
    pos, neg = y == 1, y == 0
    op_tpr = float(decisions[pos].mean()) if pos.any() else math.nan
    op_fpr = float(decisions[neg].mean()) if neg.any() else math.nan
    ax.plot([op_fpr], [op_tpr], "o", color="#c0392b", markersize=8, label="applied threshold")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate (unused images flagged)")
    ax.set_ylabel("true positive rate (used images found)")
    ax.set_title(f"ROC on {len(y)} labelled images")
    ax.legend(frameon=False, fontsize=9, loc="lower right")
    return _figure_png(fig)


def thumbnail(image: np.ndarray, px: int = THUMB_PX) -> str:
    """A grayscale uint8 image as a PNG data URI, scaled to px (nearest when enlarging)."""
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
    if im.width != px:
        resample = Image.Resampling.NEAREST if im.width < px else Image.Resampling.LANCZOS
        im = im.resize((px, px), resample)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=True)
    return _png_data_uri(buf.getvalue())


# --- text -----------------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: object, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    return f"{float(value):.{digits}f}"


def _pct(part: int, whole: int) -> str:
    return f"{100.0 * part / whole:.1f} %" if whole else "–"


def verdict_html(
    data: dict[str, Any], patients: list[PatientResult] | None, aggregation: str
) -> tuple[str, bool]:
    """The verdict paragraph (HTML) and whether it signals a risk (some images decided used)."""
    m, config = data["metrics"], data["config"]
    n_real, n_gen = len(data["real_ids"]), len(data["generated_ids"])
    n_used = int(data["used"].sum())
    threshold = float(m.get("threshold", math.nan))
    rule = str(m.get("decision_rule", ""))
    parts = [
        (
            f"<b>{n_used:,} of {n_real:,} real images ({_pct(n_used, n_real)})</b> appear to be in the training set "
            f"of the generator that produced the {n_gen:,} generated images"
        )
    ]
    if patients:
        p_used = sum(p.used for p in patients)
        rule_text = "any of their images" if aggregation == "any" else "their mean image score"
        parts[0] += (
            f", <b>from {p_used:,} of {len(patients):,} patients ({_pct(p_used, len(patients))})</b> "
            f"(a patient counts as used by {rule_text})"
        )
    parts[0] += "."
    frac = config.get("used_fraction", 0.5)
    how = _RULES.get(rule, f"set by the rule {_e(rule)!s}").format(frac=f"{100 * float(frac):.0f} %")
    parts.append(
        f"A real image is decided <i>used</i> when its membership score (method <code>{_e(m.get('method', '?'))}"
        f"</code>) is at least <b>{threshold:.4f}</b>; this threshold was {how}."
    )
    labelled = m.get("labelled") or {}
    cv, applied = labelled.get("cross_validated"), labelled.get("applied")
    if cv:
        parts.append(
            f"Checked on the {int(m.get('n_labelled', 0)):,} labelled images, each decided by a threshold fitted on "
            f"the other folds (cross-validated, an honest estimate): precision <b>{_num(cv.get('precision'))}</b>, "
            f"recall <b>{_num(cv.get('recall'))}</b>, ROC AUC <b>{_num(cv.get('auc'))}</b>."
        )
        precision = cv.get("precision")
        if n_used and precision is not None and math.isfinite(precision):
            parts.append(
                f"At that precision about {round(n_used * precision):,} of the {n_used:,} flagged images "
                "are expected to be true training images."
            )
    elif applied:
        parts.append(
            f"On the {int(m.get('n_labelled', 0)):,} labelled images: precision {_num(applied.get('precision'))}, "
            f"recall {_num(applied.get('recall'))}, ROC AUC {_num(applied.get('auc'))}."
        )
    else:
        parts.append(
            "No labels were given, so there is no measured confidence: the number of used images follows "
            "from the rule above. Give labels for some images (known used and not used) to calibrate "
            "the threshold and measure precision and recall."
        )
    return " ".join(parts), n_used > 0


def _metrics_table(labelled: dict[str, Any]) -> str:
    columns = [("applied", "threshold as applied")]
    if labelled.get("cross_validated"):
        columns.append(("cross_validated", f"{labelled.get('cv_folds', '')}-fold cross-validated"))
    head = "".join(f"<th>{_e(title)}</th>" for _, title in columns)
    body = []
    for name in _METRIC_ROWS:
        cells = "".join(f"<td class=n>{_num((labelled.get(key) or {}).get(name))}</td>" for key, _ in columns)
        body.append(f"<tr><th>{_e(name.replace('_', ' '))}</th>{cells}</tr>")
    for name in ("tp", "fp", "tn", "fn"):
        cells = "".join(f"<td class=n>{_num((labelled.get(key) or {}).get(name))}</td>" for key, _ in columns)
        body.append(f"<tr><th>{name.upper()}</th>{cells}</tr>")
    return f"<table class=metrics><tr><th>metric</th>{head}</tr>{''.join(body)}</table>"


def _summary_table(data: dict[str, Any], patients: list[PatientResult] | None) -> str:
    m, c, rej = data["metrics"], data["config"], data["rejected"] or {}
    rows = [
        ("real images audited", _num(len(data["real_ids"]))),
        ("generated images", _num(len(data["generated_ids"]))),
        ("decided used", _num(int(data["used"].sum()))),
        ("method", _e(m.get("method", c.get("method", "?")))),
        ("similarity metric", _e(c.get("metric", "cosine"))),
        ("decision rule", _e(m.get("decision_rule", "?"))),
        ("threshold", _num(m.get("threshold"), 4)),
        ("labelled images", _num(int(m.get("n_labelled", 0)))),
        ("seed", _e(c.get("seed", "–"))),
        ("files skipped (real / generated)", f"{len(rej.get('real', []))} / {len(rej.get('generated', []))}"),
    ]
    if patients is not None:
        rows.insert(3, ("patients", _num(len(patients))))
    return "<table>" + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>"


def _patients_section(
    patients: list[PatientResult], patient_labels: Mapping[str, int] | None, aggregation: str, ungrouped: int
) -> str:
    from models.metrics import classification_metrics

    out = [
        f"<h2>Patients</h2><p>{len(patients):,} patients; aggregation rule <code>{_e(aggregation)}</code>"
        + (f"; {ungrouped:,} real images without patient information are not counted" if ungrouped else "")
        + ".</p>"
    ]
    if patient_labels:
        known = [p for p in patients if p.patient in patient_labels]
        if known:
            y = np.array([int(patient_labels[p.patient]) for p in known])
            result = classification_metrics(
                y, np.array([p.used for p in known]), np.array([p.score for p in known])
            )
            out.append(
                f"<p>On the {len(known)} labelled patients: accuracy {_num(result['accuracy'])}, precision "
                f"{_num(result['precision'])}, recall {_num(result['recall'])}, "
                f"ROC AUC {_num(result['auc'])}.</p>"
            )
    rows = "".join(
        f"<tr><td><code>{_e(p.patient)}</code></td><td class=n>{p.images}</td><td class=n>{p.images_used}</td>"
        f"<td class=n>{p.studies}</td><td class=n>{p.series}</td><td class=n>{p.score:.4f}</td>"
        f"<td>{'<span class=used>used</span>' if p.used else 'not used'}</td>"
        + (f"<td>{_e(patient_labels.get(p.patient, '–'))}</td>" if patient_labels else "")
        + "</tr>"
        for p in patients[: GALLERY_ROWS * 2]
    )
    label_head = "<th>label</th>" if patient_labels else ""
    out.append(
        "<table><tr><th>patient (pseudonym)</th><th>images</th><th>used images</th><th>studies</th>"
        f"<th>series</th><th>score</th><th>decision</th>{label_head}</tr>{rows}</table>"
    )
    if len(patients) > GALLERY_ROWS * 2:
        out.append(
            f"<p class=sub>The {GALLERY_ROWS * 2} highest-scoring patients of {len(patients)}; "
            "patients.csv has them all.</p>"
        )
    return "".join(out)


def _gallery(
    data: dict[str, Any],
    rows: int,
    neighbours: int,
    labels: Mapping[str, int] | None,
    groups: Mapping[str, GroupKeys | Mapping[str, str | None]] | None = None,
) -> str:
    ids, scores, used = data["real_ids"], data["scores"], data["used"]
    gen_pos = {g: j for j, g in enumerate(data["generated_ids"])}
    order = sorted(
        range(len(ids)), key=lambda i: (-scores[i] if math.isfinite(scores[i]) else math.inf, ids[i])
    )
    out = []
    for rank, i in enumerate(order[:rows], start=1):
        label = (
            ""
            if not labels or ids[i] not in labels
            else f"<br>label: {'used' if labels[ids[i]] else 'not used'}"
        )
        decision = "<span class=used>decided used</span>" if used[i] else "decided not used"
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
            f"<div class=row><div class=meta>#{rank} <b>{_e(ids[i])}</b><br>score {scores[i]:.4f}<br>"
            f"{decision}{label}</div>{''.join(figures)}</div>"
        )
    return "".join(out)


# --- the page -------------------------------------------------------------------------------------


def render_report(
    workdir: str | Path,
    *,
    labels: Mapping[str, int] | None = None,
    groups: Mapping[str, GroupKeys | Mapping[str, str | None]] | None = None,
    aggregation: str = "any",
    patient_labels: Mapping[str, int] | None = None,
    title: str = "Training-data leakage audit",
    subtitle: str | None = None,
    gallery_rows: int = GALLERY_ROWS,
    gallery_neighbours: int = GALLERY_NEIGHBOURS,
) -> str:
    """The report of a finished work folder as one HTML string (images inline, no scripts, no links out)."""
    data = load_report_data(workdir)
    ids = data["real_ids"]
    threshold = float(data["metrics"].get("threshold", math.nan))
    patients = None
    ungrouped = 0
    if groups:
        patients = (
            aggregate_patients(ids, data["scores"], data["used"], groups, threshold, aggregation) or None
        )
        ungrouped = sum(1 for i in ids if not (groups.get(i) and _patient_of(groups[i])))
    label_of = np.array([labels.get(i, -1) if labels else -1 for i in ids], dtype=np.int64)
    verdict, risk = verdict_html(data, patients, aggregation)

    sections = [
        f"<h1>{_e(title)}</h1>",
        f"<p class=sub>{_e(subtitle)}</p>" if subtitle else "",
        f"<h2>Verdict</h2><p class='verdict{' risk' if risk else ''}'>{verdict}</p>",
    ]
    if data["metrics"].get("decision_rule") == "prior":
        sections.append(
            "<p class=note>The 'prior' rule always marks about the assumed share of images as used, "
            "whatever the evidence: read the score distribution and the gallery, not the count.</p>"
        )
    sections += [
        "<h2>Summary</h2>",
        _summary_table(data, patients),
        "<h2>Scores</h2><div class=plots>",
        (
            f"<img id=score-histogram alt='score distribution with threshold' "
            f"src='{score_histogram(data['scores'], threshold, label_of if labels else None)}'>"
        ),
    ]
    labelled_mask = label_of >= 0
    y = label_of[labelled_mask]
    if labels and y.size and len(set(y.tolist())) == 2:
        sections.append(
            f"<img id=roc-curve alt='ROC curve on the labelled images' "
            f"src='{roc_plot(y, data['scores'][labelled_mask], data['used'][labelled_mask])}'>"
        )
    sections.append("</div>")
    labelled_metrics = data["metrics"].get("labelled")
    if labelled_metrics:
        sections += [
            "<h2>Metrics on the labelled images</h2>",
            _metrics_table(labelled_metrics),
            (
                "<p class=sub>“As applied” scores the threshold on the same labels it was calibrated on "
                "(optimistic); the cross-validated column decides each image with a threshold fitted "
                "without it.</p>"
            ),
        ]
    if patients:
        sections.append(_patients_section(patients, patient_labels, aggregation, ungrouped))
    sections += [
        (
            f"<h2>Most at-risk real images</h2><p class=sub>The {min(gallery_rows, len(ids))} highest-scoring real "
            "images (red frame), each beside its nearest generated images with their similarities.</p>"
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
