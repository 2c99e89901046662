"""What a comparison writes: its HTML page (no scripts, images inline) and its output folder."""

from __future__ import annotations

import html
import json
import math
from pathlib import Path

from synthaudit.models.compare import Comparison, ComparisonRow, summary_sentence, write_comparison_csv
from synthaudit.models.report_plots import _figure_png, _new_figure
from synthaudit.models.results import write_results_csv
from synthaudit.models.summary import metrics_document
from synthaudit.models.workdir import atomic_write_bytes

STYLE = (
    "body{font-family:sans-serif;max-width:960px;margin:2em auto;color:#222}"
    "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}"
    "td:first-child,th:first-child{text-align:left}.lead{font-size:1.15em;font-weight:bold}"
    ".risk{color:#b00020}"
)


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 1e-15" if value < 1e-15 else f"{value:.2g}"


def _num(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def leakage_plot(rows: list[ComparisonRow], level: float) -> str:
    """-log10 of each checkpoint's Holm-adjusted leakage p-value in checkpoint order, with the level."""
    fig, ax = _new_figure(7.0, 3.2)
    xs = list(range(len(rows)))
    ys = [-math.log10(max(r.holm_p, 1e-300)) if r.holm_p is not None else math.nan for r in rows]
    ax.plot(xs, ys, marker="o", color="#333")
    for x, y, r in zip(xs, ys, rows, strict=True):
        if r.evidence:
            ax.plot([x], [y], marker="o", color="#b00020", markersize=9)
    ax.axhline(-math.log10(level), color="#b00020", linestyle="--", linewidth=1, label=f"level {level:g}")
    ax.set_xticks(xs, [r.name for r in rows], rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("-log10 Holm-adjusted p")
    ax.set_title("Leakage against training time (checkpoint order)", fontsize=10)
    ax.legend(fontsize=8, frameon=False)
    return _figure_png(fig)


def render_comparison(comparison: Comparison, title: str = "Checkpoint comparison") -> str:
    """The page: the series' sentence, the table, the plot and how the multiplicity is accounted for."""
    rows = comparison.rows
    body = [
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='lead{' risk' if any(r.evidence for r in rows) else ''}' id=summary>"
        f"{html.escape(summary_sentence(comparison))}</p>",
        "<table id=comparison><tr><th>checkpoint</th><th>step</th><th>verdict</th><th>leakage p</th>"
        "<th>Holm-adjusted p</th><th>flagged</th><th>at least used</th><th>generated</th>"
        "<th>reference check p</th></tr>",
    ]
    for r in rows:
        body.append(
            f"<tr><td>{html.escape(r.name)}</td><td>{_num(r.step)}</td><td>{html.escape(r.verdict)}</td>"
            f"<td>{_p(r.p_value)}</td><td>{_p(r.holm_p)}</td><td>{_num(r.n_flagged)}</td>"
            f"<td>{_num(r.used_lower_bound)}</td><td>{_num(r.n_generated)}</td><td>{_p(r.check_p)}</td></tr>"
        )
    body.append("</table>")
    if any(r.holm_p is not None for r in rows):
        body.append(
            f"<p><img id=plot alt='leakage by checkpoint' src='{leakage_plot(rows, comparison.level)}'></p>"
        )
    body.append(
        "<p>Each checkpoint was audited in full against the same real and reference images (decoded once for "
        "the series): its own leakage test, flags at the false discovery rate and lower bound, as a separate "
        f"audit would give them. Across the {len(rows)} checkpoints the leakage p-values are adjusted by "
        "Holm's step-down method, so the chance that any checkpoint is reported as leaking when none leaks "
        f"is at most {comparison.level:g}, whatever the dependence between the checkpoints. Each checkpoint's "
        "results.csv and metrics.json are in its folder.</p>"
    )
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(body)
        + "</body></html>"
    )


def write_comparison_report(comparison: Comparison, path: str | Path) -> Path:
    """Write the comparison page (private file, atomically)."""
    path = Path(path)
    atomic_write_bytes(path, render_comparison(comparison).encode())
    return path


def write_comparison_folder(comparison: Comparison, out: str | Path) -> Path:
    """OUT/comparison.csv, OUT/comparison.html and OUT/<checkpoint>/{results.csv, metrics.json} (the
    metrics document of GET /v1/audits/{id}/metrics, audit_id null)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for name, outcome in comparison.outcomes.items():
        write_results_csv(outcome.rows, out / name / "results.csv")
        document = {"audit_id": None, **metrics_document(outcome.metrics, outcome.rejected)}
        atomic_write_bytes(
            out / name / "metrics.json", (json.dumps(document, indent=2, sort_keys=True) + "\n").encode()
        )
    write_comparison_csv(comparison, out / "comparison.csv")
    write_comparison_report(comparison, out / "comparison.html")
    return out
