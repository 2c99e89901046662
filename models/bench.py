"""Benchmark harness: run methods over folders with known answers and score them honestly."""
from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from models import decide, metrics
from models.config import AuditConfig
from models.results import read_labels_csv
from models.stages import STAGES, AuditInputs, run_audit

# Columns of the printed table (the paper's Table 3 order, then ours).
TABLE_COLUMNS = [
    "folder", "method", "accuracy", "precision", "specificity", "recall", "f1", "f1_ci",
    "auc", "auc_ci", "tpr_at_1pct_fpr", "f1_median", *[f"t_{s}" for s in STAGES], "t_total",
]
CALIBRATION = "5-fold stratified cross-validation: each image is decided by a threshold fitted on the other folds"


@dataclass
class BenchFolder:
    """A benchmark folder: real/, generated/ and labels.csv."""

    path: Path

    @property
    def labels(self) -> dict[str, int]:
        return read_labels_csv(self.path / "labels.csv")

    def check(self) -> None:
        """Raise a clear error when the folder is not laid out as a benchmark."""
        missing = [p for p in ("real", "generated", "labels.csv") if not (self.path / p).exists()]
        if missing:
            raise ValueError(f"{self.path} is not a benchmark folder: missing {', '.join(missing)}")


def _fmt_ci(interval: tuple[float, float]) -> str:
    return f"{interval[0]:.3f}-{interval[1]:.3f}"


def score_run(ids: list[str], scores: np.ndarray, labels: dict[str, int], seed: int) -> dict[str, Any]:
    """Metrics of one scored run: cross-validated threshold, bootstrap CIs, and the label-free median split."""
    known = [(i, labels[image_id]) for i, image_id in enumerate(ids) if image_id in labels]
    if not known:
        raise ValueError("no real image of the run has a label")
    positions = np.array([p for p, _ in known])
    y = np.array([v for _, v in known])
    s = scores[positions]
    cv_pred, _ = decide.cross_validated_decisions(s, y, folds=5, seed=seed)
    row = metrics.classification_metrics(y, cv_pred, s)
    ci = metrics.bootstrap_ci(y, cv_pred, s, n_boot=500, seed=seed)
    median_pred = decide.apply_threshold(s, decide.prior_threshold(s, 0.5))
    row["f1_ci"] = _fmt_ci(ci["f1"])
    row["auc_ci"] = _fmt_ci(ci["auc"])
    row["f1_median"] = metrics.classification_metrics(y, median_pred, s)["f1"]
    return row


def run_bench(
    folders: list[Path],
    methods: list[str],
    base_config: AuditConfig,
    workroot: Path | None = None,
    on_progress: Callable[[str, str, str, float], None] | None = None,
) -> list[dict[str, Any]]:
    """One row per (folder, method): the audit runs without labels; labels only score it."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="synthaudit-bench-") as tmp:
        root = Path(workroot) if workroot else Path(tmp)
        for folder in map(BenchFolder, folders):
            folder.check()
            labels = folder.labels
            for method in methods:
                config = replace(base_config, method=method)
                workdir = root / f"{folder.path.name}-{method}"
                started = time.perf_counter()
                outcome = run_audit(
                    AuditInputs(folder.path / "real", folder.path / "generated"),
                    config,
                    workdir,
                    (lambda stage, f, m=method, n=folder.path.name: on_progress(n, m, stage, f)) if on_progress else None,
                )
                total = time.perf_counter() - started
                ids = [r.id for r in outcome.rows]
                scores = np.array([r.score for r in outcome.rows])
                label = f"{method}:{config.encoder}-{config.metric}" if method == "similarity" else method
                row = {"folder": folder.path.name, "method": label, **score_run(ids, scores, labels, config.seed)}
                row.update({f"t_{s}": outcome.metrics["timings"].get(s, 0.0) for s in STAGES})
                row["t_total"] = total
                rows.append(row)
    return rows
