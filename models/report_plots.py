"""The report's plots and thumbnails: pure functions from arrays to PNG data URIs (matplotlib without
pyplot, so no global state: safe in a server thread)."""

from __future__ import annotations

import base64
import io
import math
from typing import Any

import numpy as np

THUMB_PX = 96
RED, BLUE, GREY = "#c0392b", "#2f6fb3", "#a9b3bd"


def png_data_uri(png: bytes) -> str:
    """PNG bytes as a data URI (base64: no character that HTML would need escaped)."""
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _figure_png(fig: Any) -> str:
    """A figure as a PNG data URI."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    return png_data_uri(buf.getvalue())


def _new_figure(width: float, height: float) -> tuple[Any, Any]:
    """A figure on an Agg canvas with one axis, top and right spines off."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(alpha=0.25)
    return fig, ax


def _score_bins(values: list[np.ndarray], extra: float | None = None, n: int = 40) -> np.ndarray:
    """n equal bins spanning the finite values (and extra, e.g. a threshold)."""
    finite = np.concatenate([v[np.isfinite(v)] for v in values]) if values else np.zeros(0)
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if extra is not None and math.isfinite(extra):
        lo, hi = min(lo, extra), max(hi, extra)
    return np.linspace(lo, hi + 1e-9 if hi == lo else hi, n + 1)


def _score_plot_png(
    fig: Any, ax: Any, threshold: float | None, threshold_label: str, ylabel: str, title: str
) -> str:
    """Finish a histogram of membership scores: the dashed threshold line (when finite), axes, legend."""
    if threshold is not None and math.isfinite(threshold):
        ax.axvline(
            threshold,
            color="#1d232b",
            linestyle="--",
            linewidth=1.5,
            label=f"{threshold_label} {threshold:.4f}",
        )
    ax.set_xlabel("membership score (higher = more likely used)")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(frameon=False, fontsize=9)
    return _figure_png(fig)


def score_histogram(scores: np.ndarray, threshold: float, label_of: np.ndarray | None) -> str:
    """The real images' membership scores with the rule's threshold (stacked by label when known)."""
    fig, ax = _new_figure(6.4, 3.6)
    bins = _score_bins([scores], threshold)
    if label_of is not None and (label_of >= 0).any():
        parts = [
            (scores[label_of == 1], "labelled used", RED),
            (scores[label_of == 0], "labelled not used", BLUE),
            (scores[label_of < 0], "unlabelled", GREY),
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
    return _score_plot_png(
        fig, ax, threshold, "rule's threshold", "real images", "Score distribution of the real images"
    )


def density_histograms(
    ax: Any, reference: np.ndarray, candidates: np.ndarray, bins: Any, reference_label: str
) -> None:
    """Reference (blue) and candidate (red) histograms on shared bins, each a density (area 1)."""
    for values, label, colour in (
        (reference, f"{reference_label} ({len(reference):,})", BLUE),
        (candidates, f"candidates ({len(candidates):,})", RED),
    ):
        values = values[np.isfinite(values)]
        if values.size:
            ax.hist(values, bins=bins, density=True, color=colour, alpha=0.45, label=label)
            ax.hist(values, bins=bins, density=True, color=colour, histtype="step", linewidth=1.6)


def candidate_reference_plot(
    candidates: np.ndarray, reference: np.ndarray, threshold: float | None, threshold_label: str = "threshold"
) -> str:
    """Candidate vs reference score distributions, each normalised to its own size (a density), so
    that sets of different sizes compare. Leakage shows as candidate mass to the right of the reference."""
    fig, ax = _new_figure(5.0, 3.4)
    n_bins = int(np.clip(2 * math.sqrt(len(candidates) + len(reference)), 10, 40))
    bins = _score_bins([candidates, reference], threshold, n_bins)
    density_histograms(ax, reference, candidates, bins, "reference: known not used")
    return _score_plot_png(
        fig, ax, threshold, threshold_label, "density (each set's area = 1)", "Candidate vs reference scores"
    )


def p_value_histogram(p_values: np.ndarray, n_reference: int, fdr_cutoff: float | None = None) -> str:
    """Histogram of the candidates' conformal p-values with the count expected in each bin if no
    candidate were used (the p-values then lie on the grid k/(n_ref+1), uniformly). Used images
    pile up at the left; the lowest possible p-value is 1/(n_ref+1)."""
    p = np.asarray(p_values, dtype=np.float64)
    p = p[np.isfinite(p)]
    fig, ax = _new_figure(5.0, 3.4)
    n_grid = n_reference + 1  # the possible p-values k/n_grid, k = 1..n_grid
    per_bin = max(1, math.ceil(n_grid / 20))  # whole grid points per bin, edges between them
    edges = (np.arange(0, n_grid + per_bin, per_bin) + 0.5) / n_grid
    edges[0], edges[-1] = 0.0, (n_grid + 0.5) / n_grid  # the last bin may hold fewer grid points
    grid = np.arange(1, n_grid + 1) / float(n_grid)
    expected = p.size * np.histogram(grid, edges)[0] / grid.size
    ax.hist(
        p,
        bins=edges,
        color=RED,
        alpha=0.75,
        edgecolor="white",
        linewidth=0.4,
        label=f"candidates ({p.size:,})",
    )
    ax.stairs(expected, edges, color=BLUE, linewidth=2, label="expected if none were used")
    if fdr_cutoff is not None and fdr_cutoff > 0:
        ax.axvline(
            fdr_cutoff, color="#1d232b", linestyle="--", linewidth=1.2, label=f"flagged: p ≤ {fdr_cutoff:.3g}"
        )
    ax.set_xlim(0, float(edges[-1]))
    ax.set_xlabel(f"conformal p-value (smallest possible: 1/{n_reference + 1:,})")
    ax.set_ylabel("candidate images")
    ax.set_title("p-values of the candidate images")
    ax.legend(frameon=False, fontsize=9)
    return _figure_png(fig)


def roc_plot(y: np.ndarray, scores: np.ndarray, decisions: np.ndarray | None) -> str:
    """ROC curve on the labelled images, with the operating point of the applied decisions (none for a
    calibrated audit: its known-not-used images are the reference, never decided)."""
    from synthaudit.models.metrics import roc_auc, roc_curve

    fpr, tpr, _ = roc_curve(y, scores)
    auc = roc_auc(y, scores)
    fig, ax = _new_figure(4.4, 4.0)
    ax.plot([0, 1], [0, 1], color=GREY, linestyle=":", linewidth=1, label="chance")
    ax.plot(fpr, tpr, color=BLUE, linewidth=2, label=f"ROC (AUC {auc:.3f})")
    if decisions is not None:
        pos, neg = y == 1, y == 0
        op_tpr = float(decisions[pos].mean()) if pos.any() else math.nan
        op_fpr = float(decisions[neg].mean()) if neg.any() else math.nan
        ax.plot([op_fpr], [op_tpr], "o", color=RED, markersize=8, label="applied decisions")
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
    return png_data_uri(buf.getvalue())
