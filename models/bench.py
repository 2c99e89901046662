"""Benchmark harness: run methods over folders with known answers and score them honestly."""

from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from synthaudit.models import calibration, decide, metrics
from synthaudit.models.config import AuditConfig
from synthaudit.models.results import read_labels_csv
from synthaudit.models.stages import STAGES, AuditInputs, load_decoded, run_audit

# Columns of the printed table (the paper's Table 3 order, then ours).
TABLE_COLUMNS = [
    "folder",
    "method",
    "accuracy",
    "precision",
    "specificity",
    "recall",
    "f1",
    "f1_ci",
    "auc",
    "auc_ci",
    "tpr_at_1pct_fpr",
    "tpr_at_0.1pct_fpr",
    "f1_median",
    "blind_auc",
    *[f"t_{s}" for s in STAGES],
    "t_total",
]
# Columns of the calibrated table: a simulated hold-out of known-not-used images as the reference.
CALIBRATED_COLUMNS = [
    "folder",
    "method",
    "n_reference",
    "n_candidates",
    "leakage_p",
    "detected",
    "check_p",
    "check_passed",
    "verdict",
    "flagged",
    "fdp",
    "tpr_at_fdr",
    "used_lower_bound",
    "used_candidates",
    "used_share_estimate",
    "mean_fdp",
    "mean_tpr",
    "detect_rate",
]
# Columns of the null table: real images the generator never saw, so nothing may be flagged.
NULL_COLUMNS = [
    "folder",
    "method",
    "n_reference",
    "n_candidates",
    "leakage_p",
    "detected",
    "check_p",
    "check_passed",
    "verdict",
    "flagged",
    "fdp",
    "used_lower_bound",
    "detect_rate",
    "mean_flagged",
    "t_total",
]
CALIBRATION = (
    "5-fold stratified cross-validation: each image is decided by a threshold fitted on the other folds"
)
REFERENCE_SHARE = 0.4  # share of the not-used images drawn as the simulated reference (hold-out)
BLIND_AUC_WARNING = 0.6  # blind baseline above this: the folder's split is told apart without the generator
REDRAWS = 200  # extra seeded reference draws over the same scores, for mean FDP/TPR and the null detect rate
CALIBRATED_NOTE = (
    "calibrated: reference = a seeded random {share:.0%} of the not-used images (seed = --seed), the other "
    "images are the candidates; figures computed by models.calibration on the SAME scores as the table above "
    "(labels do not change the scores: the labelled images stay in the real pool), no second audit. leakage_p: "
    "rank test of the candidates against the reference (detected: p <= 0.05); flagged: Benjamini-Hochberg at "
    "FDR {fdr:g}; fdp: not-used flagged / flagged; tpr_at_fdr: used flagged / used candidates; "
    "used_lower_bound: 95 % lower bound on the used count (vs used_candidates, the truth); mean_fdp, mean_tpr "
    "and detect_rate (the share detected at 0.05): over {redraws} other seeded reference draws of the same scores. "
    "check_p, check_passed: the blind reference check (models.reference_check.check_reference, level {level:g}) "
    "of that drawn reference against the candidates, on the decoded real images, never the generated ones; "
    "verdict: the product's leakage.verdict (inconclusive when the check fails, else detected / not_detected)."
)
NULL_NOTE = (
    "null pairing: real images the generator never saw (all not used) against its generated images; reference = "
    "a seeded random {share:.0%} of them, the others are the candidates, so every flag is false. detected at "
    "p <= 0.05; flagged: Benjamini-Hochberg at FDR {fdr:g}; detect_rate and mean_flagged: over {redraws} seeded "
    "reference draws of the same scores (a valid test detects at a rate <= 0.05). check_p, check_passed, verdict: "
    "the blind reference check (level {level:g}) of the drawn reference and the product's leakage.verdict."
)
BLIND_NOTE = (
    "blind_auc: the blind baseline, how well used and not-used real images are told apart WITHOUT the generated "
    "images (models.reference_check.blind_scores: the reference check's features, a 5-fold cross-fitted "
    "classifier, AUC of its held-out scores; 0.5 = the split cannot be seen)."
)
SPLIT_BIAS_NOTE = (
    "SPLIT BIAS: {folders}: blind_auc > {threshold:g}: used and not-used images differ without looking at the "
    "generated images, so these figures measure how the split was drawn, not leakage."
)


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
    row: dict[str, Any] = metrics.classification_metrics(y, cv_pred, s)
    row["tpr_at_0.1pct_fpr"] = metrics.tpr_at_fpr(y, s, 0.001)
    ci = metrics.bootstrap_ci(y, cv_pred, s, n_boot=500, seed=seed)
    median_pred = decide.apply_threshold(s, decide.prior_threshold(s, 0.5))
    row["f1_ci"] = _fmt_ci(ci["f1"])
    row["auc_ci"] = _fmt_ci(ci["auc"])
    row["f1_median"] = metrics.classification_metrics(y, median_pred, s)["f1"]
    return row


def blind_baseline(images: np.ndarray, ids: list[str], labels: dict[str, int], seed: int = 0) -> float:
    """The blind baseline AUC: the reference check's cross-fitted scores (models.reference_check.blind_scores)
    of used (label 1) against not-used (label 0) real images, the generated images never looked at. Only
    labelled images take part; NaN when one of the two kinds is missing."""
    from synthaudit.models.reference_check import blind_scores

    positions = np.array([i for i, image_id in enumerate(ids) if image_id in labels], dtype=np.int64)
    if positions.size == 0:
        return math.nan
    used = np.array([int(labels[ids[i]]) for i in positions]) == 1
    if used.all() or not used.any():
        return math.nan
    scores, _ = blind_scores(np.asarray(images)[positions], used, seed=seed)
    return metrics.roc_auc(used.astype(int), scores)


def reference_check_figures(
    images: np.ndarray, ids: list[str], reference_ids: list[str], seed: int = 0
) -> dict[str, Any]:
    """The reference check an audit would run with `reference_ids` as its reference (all images of the run
    are the pool; no known groups, as for a folder of PNGs): check_auc, check_p, check_passed, t_check."""
    from synthaudit.models.reference_check import DEFAULT_CHECK_LEVEL, check_reference

    started = time.perf_counter()
    is_reference = np.isin(np.asarray(ids, dtype=object), np.asarray(list(reference_ids), dtype=object))
    result, _ = check_reference(np.asarray(images), is_reference, level=DEFAULT_CHECK_LEVEL, seed=seed)
    return {
        "check_auc": result.statistic,
        "check_p": result.p_value,
        "check_passed": result.passed,
        "check_units": result.units,
        "check_level": result.level,
        "t_check": time.perf_counter() - started,
    }


def product_verdict(detected: bool, check_passed: bool | None) -> str:
    """leakage.verdict as the decide stage gives it (models.stages.decide.leakage_verdict)."""
    if check_passed is False:
        return "inconclusive"
    return "detected" if detected else "not_detected"


def _decoded_real(workdir: Path, ids: list[str]) -> np.ndarray:
    """The audit's decoded real images (its image size), in the order of `ids`."""
    pool, _ = load_decoded(workdir)
    position = {image_id: i for i, image_id in enumerate(pool.ids)}
    return np.asarray(pool.images)[[position[i] for i in ids]]


def draw_reference(labels: dict[str, int], share: float = REFERENCE_SHARE, seed: int = 0) -> list[str]:
    """The simulated hold-out: a seeded random `share` of the not-used ids (label 0).

    The not-used ids are sorted, then `numpy.random.default_rng(seed).choice(n, round(share * n),
    replace=False)` picks positions; the picked ids are returned sorted. The same labels, share and seed
    always give the same reference (benchmarks/calibrated_check.py writes it as the audit's REF.csv).
    """
    if not 0.0 < share < 1.0:
        raise ValueError(f"share must lie strictly between 0 and 1, got {share}")
    not_used = sorted(image_id for image_id, used in labels.items() if int(used) == 0)
    n = int(round(share * len(not_used)))
    picked = np.random.default_rng(seed).choice(len(not_used), size=n, replace=False)
    return sorted(not_used[i] for i in picked)


def calibrated_figures(
    ids: list[str],
    scores: np.ndarray,
    labels: dict[str, int],
    reference_ids: list[str],
    fdr: float = calibration.DEFAULT_FDR,
    level: float = calibration.DEFAULT_LEVEL,
) -> dict[str, Any]:
    """What a calibrated audit reports with `reference_ids` as its known-not-used images, scored by `labels`.

    The reference = the run's images among `reference_ids`; the candidates = every other image of the run.
    This is `models.stages.decide_images` with labels {id: 0 for id in reference_ids}, applied to scores
    already computed (scoring does not depend on labels). `fdp` and `tpr_at_fdr` are measured on the
    labelled candidates: false discoveries / flagged (0 when nothing is flagged) and used flagged / used.
    """
    scores = np.asarray(scores, dtype=np.float64)
    in_reference = np.isin(np.asarray(ids, dtype=object), np.asarray(list(reference_ids), dtype=object))
    if not in_reference.any() or in_reference.all():
        raise ValueError("the calibrated figures need reference images and candidates")
    result = calibration.calibrate(scores[~in_reference], scores[in_reference], fdr=fdr, level=level)
    truth = np.array([labels.get(image_id, -1) for image_id in ids], dtype=np.int64)[~in_reference]
    flagged = result.flagged
    known_flags = int((flagged & (truth >= 0)).sum())
    false_flags = int((flagged & (truth == 0)).sum())
    used = truth == 1
    leak = result.leakage
    return {
        "n_reference": leak["n_reference"],
        "n_candidates": leak["n_candidates"],
        "leakage_p": leak["p_value"],
        "detected": bool(leak["detected"]),
        "flagged": leak["n_flagged"],
        "false_flags": false_flags,
        "fdp": false_flags / known_flags if known_flags else 0.0,
        "tpr_at_fdr": int((flagged & used).sum()) / int(used.sum()) if used.any() else math.nan,
        "used_lower_bound": leak["used_count_lower_bound"],
        "used_candidates": int(used.sum()),
        "used_share_estimate": leak["used_share_estimate"],
        "min_p_value": leak["min_p_value"],
        "fdr": fdr,
    }


def redraw_figures(
    ids: list[str],
    scores: np.ndarray,
    labels: dict[str, int],
    fdr: float,
    seed: int,
    draws: int = REDRAWS,
    share: float = REFERENCE_SHARE,
) -> dict[str, float]:
    """Means over `draws` further reference draws (seeds seed+1 .. seed+draws) of the same scores: FDP,
    TPR at `fdr`, the detection rate of the leakage test and the flagged count. Only conformal p-values,
    BH and the rank test are computed (no lower bound), so this costs milliseconds per draw."""
    scores = np.asarray(scores, dtype=np.float64)
    id_array = np.asarray(ids, dtype=object)
    truth = np.array([labels.get(image_id, -1) for image_id in ids], dtype=np.int64)
    fdp, tpr, detected, flagged = [], [], [], []
    for k in range(1, draws + 1):
        ref = np.isin(id_array, np.asarray(draw_reference(labels, share, seed + k), dtype=object))
        c, t = scores[~ref], truth[~ref]
        hits, _ = calibration.benjamini_hochberg(calibration.conformal_p_values(c, scores[ref]), fdr)
        known = int((hits & (t >= 0)).sum())
        fdp.append(int((hits & (t == 0)).sum()) / known if known else 0.0)
        if (t == 1).any():
            tpr.append(int((hits & (t == 1)).sum()) / int((t == 1).sum()))
        detected.append(calibration.leakage_test(c, scores[ref]).detected)
        flagged.append(int(hits.sum()))
    return {
        "mean_fdp": float(np.mean(fdp)),
        "mean_tpr": float(np.mean(tpr)) if tpr else math.nan,
        "detect_rate": float(np.mean(detected)),
        "mean_flagged": float(np.mean(flagged)),
        "redraws": draws,
    }


def _audit(
    real: Path,
    generated: Path,
    config: AuditConfig,
    workdir: Path,
    name: str,
    on_progress: Callable[[str, str, str, float], None] | None,
) -> tuple[list[str], np.ndarray, dict[str, Any], float]:
    started = time.perf_counter()
    outcome = run_audit(
        AuditInputs(real, generated),
        config,
        workdir,
        partial(on_progress, name, config.method) if on_progress else None,
    )
    total = time.perf_counter() - started
    ids = [r.id for r in outcome.rows]
    return ids, np.array([r.score for r in outcome.rows]), outcome.metrics, total


def _method_label(config: AuditConfig) -> str:
    return (
        f"{config.method}:{config.encoder}-{config.metric}"
        if config.method == "similarity"
        else config.method
    )


def run_bench(
    folders: list[Path],
    methods: list[str],
    base_config: AuditConfig,
    workroot: Path | None = None,
    on_progress: Callable[[str, str, str, float], None] | None = None,
    reference_share: float = REFERENCE_SHARE,
    redraws: int = REDRAWS,
) -> list[dict[str, Any]]:
    """One row per (folder, method): the audit runs without labels; labels only score it, and draw the
    simulated reference of the calibrated figures (computed on the same scores: one audit per row)."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="synthaudit-bench-") as tmp:
        root = Path(workroot) if workroot else Path(tmp)
        for folder in map(BenchFolder, folders):
            folder.check()
            labels = folder.labels
            reference = draw_reference(labels, reference_share, base_config.seed)
            blind: dict[str, Any] | None = None  # label- and method-free: computed once per folder
            for method in methods:
                config = replace(base_config, method=method)
                workdir = root / f"{folder.path.name}-{method}"
                ids, scores, audit_metrics, total = _audit(
                    folder.path / "real",
                    folder.path / "generated",
                    config,
                    workdir,
                    folder.path.name,
                    on_progress,
                )
                if blind is None:
                    images = _decoded_real(workdir, ids)
                    started = time.perf_counter()
                    blind = {"blind_auc": blind_baseline(images, ids, labels, config.seed)}
                    blind["t_blind"] = time.perf_counter() - started
                    blind.update(reference_check_figures(images, ids, reference, config.seed))
                row = {
                    "folder": folder.path.name,
                    "method": _method_label(config),
                    **score_run(ids, scores, labels, config.seed),
                }
                row.update(calibrated_figures(ids, scores, labels, reference, config.fdr))
                row.update(blind)
                row["verdict"] = product_verdict(row["detected"], row["check_passed"])
                if redraws:
                    row.update(
                        redraw_figures(ids, scores, labels, config.fdr, config.seed, redraws, reference_share)
                    )
                row.update({f"t_{s}": audit_metrics["timings"].get(s, 0.0) for s in STAGES})
                row["t_total"] = total
                rows.append(row)
    return rows


def run_null_bench(
    null_real: Path,
    folders: list[Path],
    methods: list[str],
    base_config: AuditConfig,
    workroot: Path | None = None,
    on_progress: Callable[[str, str, str, float], None] | None = None,
    reference_share: float = REFERENCE_SHARE,
    redraws: int = REDRAWS,
) -> list[dict[str, Any]]:
    """Null pairings: the real images of `null_real` (a folder of images, or a folder with real/), none of
    which any generator here saw, audited against each folder's generated images (FOLDER/generated, or
    FOLDER itself when it has no generated/). Every real image counts as not used, a seeded share of them
    is the reference, and every flag is a false discovery."""
    null_real = Path(null_real)
    real = null_real / "real" if (null_real / "real").is_dir() else null_real
    if not real.exists():
        raise ValueError(f"{null_real} does not exist")
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="synthaudit-null-") as tmp:
        root = Path(workroot) if workroot else Path(tmp)
        for folder in map(Path, folders):
            generated = folder / "generated" if (folder / "generated").is_dir() else folder
            if not generated.exists():
                raise ValueError(f"{folder} does not exist")
            name = f"null:{null_real.name}+{folder.name}"
            for method in methods:
                config = replace(base_config, method=method)
                workdir = root / f"null-{folder.name}-{method}"
                ids, scores, audit_metrics, total = _audit(
                    real, generated, config, workdir, name, on_progress
                )
                labels = dict.fromkeys(ids, 0)
                reference = draw_reference(labels, reference_share, config.seed)
                row = {
                    "folder": name,
                    "method": _method_label(config),
                    **calibrated_figures(ids, scores, labels, reference, config.fdr),
                }
                row.update(reference_check_figures(_decoded_real(workdir, ids), ids, reference, config.seed))
                row["verdict"] = product_verdict(row["detected"], row["check_passed"])
                if redraws:
                    row.update(
                        redraw_figures(ids, scores, labels, config.fdr, config.seed, redraws, reference_share)
                    )
                for undefined in ("tpr_at_fdr", "mean_tpr"):  # no used image: no TPR (and no NaN in the JSON)
                    row.pop(undefined, None)
                row.update({f"t_{s}": audit_metrics["timings"].get(s, 0.0) for s in STAGES})
                row["t_total"] = total
                rows.append(row)
    return rows


def _display(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows for printing: p-values in scientific notation (3 decimals would print 0.000)."""
    out = []
    for r in rows:
        r = dict(r)
        for key in ("leakage_p", "check_p"):
            if key in r:
                r[key] = "-" if r[key] is None else f"{r[key]:.2g}"
        if r.get("check_passed", False) is None:
            r["check_passed"] = "not made"
        out.append(r)
    return out


def split_bias_note(rows: list[dict[str, Any]], threshold: float = BLIND_AUC_WARNING) -> str:
    """The footnote naming the folders whose blind baseline exceeds `threshold` ("" when none does)."""
    biased: dict[str, float] = {}
    for r in rows:
        auc = r.get("blind_auc")
        if auc is not None and not math.isnan(auc) and auc > threshold:
            biased[str(r["folder"])] = float(auc)
    if not biased:
        return ""
    folders = ", ".join(f"{name} (blind_auc {auc:.3f})" for name, auc in biased.items())
    return SPLIT_BIAS_NOTE.format(folders=folders, threshold=threshold)


def format_bench(
    rows: list[dict[str, Any]],
    fdr: float,
    null: bool = False,
    reference_share: float = REFERENCE_SHARE,
    redraws: int = REDRAWS,
) -> str:
    """The printed report of `run_bench` (two tables) or `run_null_bench` (one table), with their notes."""
    stages = ", ".join(STAGES)
    from synthaudit.models.reference_check import DEFAULT_CHECK_LEVEL

    values = {"share": reference_share, "fdr": fdr, "redraws": redraws, "level": DEFAULT_CHECK_LEVEL}
    if null:
        return (
            metrics.format_metrics_table(_display(rows), NULL_COLUMNS)
            + f"\n\n{NULL_NOTE.format(**values)} t_total: seconds."
        )
    bias = split_bias_note(rows)
    return (
        metrics.format_metrics_table(rows, TABLE_COLUMNS)
        + f"\n\nthreshold: {CALIBRATION}; f1_median: the label-free `prior` rule at its default share 0.5 (a median split); tpr_at_0.1pct_fpr: with fewer "
        f"than 1,000 not-used images, the TPR at zero false positives; t_*: seconds per stage ({stages}); "
        f"CIs: bootstrap 95 %. {BLIND_NOTE}"
        + (f"\n{bias}" if bias else "")
        + "\n\n"
        + metrics.format_metrics_table(_display(rows), CALIBRATED_COLUMNS)
        + f"\n\n{CALIBRATED_NOTE.format(**values)}"
        + (f"\n{bias}" if bias else "")
    )
