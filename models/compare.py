"""A series of generated sets (checkpoints of one generator) audited against one real set and one
reference: which checkpoint can be shared?

The real and reference images are decoded once for the whole series (`decode_pool`); each checkpoint
then gets its own work folder, holding the shared pool beside its own generated images, and runs every
later stage there, so each gets the full audit of a separate run (its verdict, flags, bound and reference
check). Across the series the leakage p-values are adjusted by Holm's step-down method, so "evidence of
leakage" for any checkpoint holds at the stated level for the whole series (family-wise error rate).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from synthaudit.models.config import AuditConfig
from synthaudit.models.csv_safety import text_cell, write_csv_atomic
from synthaudit.models.io import load_images
from synthaudit.models.stages.common import (
    STAGES,
    AuditInputs,
    AuditOutcome,
    _named,
    _noop,
    _record_timing,
    stage_done,
)
from synthaudit.models.stages.decode import decode_pool, write_decoded
from synthaudit.models.stages.running import read_outcome, run_stage

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
DEFAULT_LEVEL = 0.05


@dataclass(frozen=True)
class Checkpoint:
    """One generated set of the series: a name (a folder name, e.g. "epoch-040") and where it is."""

    name: str
    generated: Path


@dataclass(frozen=True)
class ComparisonRow:
    """One checkpoint's line of the comparison table."""

    name: str
    step: int | None  # the last number in the name (epoch or step), for the order of the plot
    verdict: str  # detected | not_detected | inconclusive | uncalibrated
    p_value: float | None  # the checkpoint's own leakage p-value (None: inconclusive or uncalibrated)
    holm_p: float | None  # Holm-adjusted across the series
    evidence: bool | None  # holm_p <= level (None: no test)
    n_flagged: int | None
    used_lower_bound: int | None
    n_generated: int
    check_p: float | None  # the reference check (the same real pool for every checkpoint)


@dataclass
class Comparison:
    """The series' table, in checkpoint order, and each checkpoint's audit outcome by name."""

    rows: list[ComparisonRow]
    outcomes: dict[str, AuditOutcome]
    level: float


def checkpoint_step(name: str) -> int | None:
    """The last run of digits in a checkpoint's name ("ddpm-epoch-0040" -> 40), or None."""
    numbers = re.findall(r"\d+", name)
    return int(numbers[-1]) if numbers else None


def named_checkpoints(pairs: Sequence[tuple[str, Path]]) -> list[Checkpoint]:
    """Checkpoints from (name, generated set) pairs, in checkpoint order (the last number in the name,
    then the name). Names must be distinct and plain (letters, digits, . _ -): each becomes a folder."""
    out: list[Checkpoint] = []
    for name, path in pairs:
        if not NAME.match(name):
            raise ValueError(
                f"checkpoint name {name!r} (from {path}) must be letters, digits, '.', '_' or '-'"
            )
        if any(c.name == name for c in out):
            raise ValueError(f"two generated sets are both named {name!r}: give them distinct folder names")
        out.append(Checkpoint(name, Path(path)))
    if len(out) < 2:
        raise ValueError("a comparison needs at least two generated sets")
    return sorted(out, key=lambda c: (checkpoint_step(c.name) is None, checkpoint_step(c.name) or 0, c.name))


def set_name(path: str | Path) -> str:
    """A generated set's name: its folder's name, or an archive's without the suffixes."""
    path = Path(path)
    return path.name.split(".")[0] if path.is_file() else path.name


def checkpoints_of(sources: Sequence[str | Path]) -> list[Checkpoint]:
    """Checkpoints named after their folders (or archives, without the suffix)."""
    return named_checkpoints([(set_name(s), Path(s)) for s in sources])


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error rate under any dependence)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def run_comparison(
    real: Path,
    checkpoints: Sequence[Checkpoint],
    config: AuditConfig,
    workdir: Path,
    *,
    reference: Path | None = None,
    labels: dict[str, int] | None = None,
    level: float = DEFAULT_LEVEL,
    on_progress: Callable[[str, float], None] | None = None,
) -> Comparison:
    """Audit every checkpoint against the same real pool, decoded once; returns the series' table."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level}")
    workdir = Path(workdir)
    report = on_progress or (lambda _stage, _f: None)
    pool = decode_pool(
        AuditInputs(real, checkpoints[0].generated, labels, reference=reference),
        config,
        lambda f: report("decode real", f),
    )
    outcomes: dict[str, AuditOutcome] = {}
    for k, ckpt in enumerate(checkpoints):
        wd = workdir / ckpt.name
        inputs = AuditInputs(real, ckpt.generated, labels, reference=reference)
        wd.mkdir(parents=True, exist_ok=True)
        if not stage_done("decode", wd):
            t0 = time.perf_counter()
            generated = load_images(ckpt.generated, config.image_size)
            write_decoded(wd, pool, generated)
            _record_timing(wd, "decode", time.perf_counter() - t0)
        for stage in STAGES:
            progress = _named(on_progress, f"{k + 1}/{len(checkpoints)} {stage}") if on_progress else _noop
            run_stage(stage, wd, inputs, config, progress)
        outcomes[ckpt.name] = read_outcome(wd)
    return Comparison(_table(checkpoints, outcomes, level), outcomes, level)


def _table(
    checkpoints: Sequence[Checkpoint], outcomes: dict[str, AuditOutcome], level: float
) -> list[ComparisonRow]:
    leaks = [outcomes[c.name].metrics.get("leakage") or {} for c in checkpoints]
    tested = [i for i, leak in enumerate(leaks) if leak.get("p_value") is not None]
    adjusted = dict(zip(tested, holm([float(leaks[i]["p_value"]) for i in tested]), strict=True))
    rows = []
    for i, ckpt in enumerate(checkpoints):
        m, leak = outcomes[ckpt.name].metrics, leaks[i]
        check = m.get("reference_check") or {}
        holm_p = adjusted.get(i)
        rows.append(
            ComparisonRow(
                name=ckpt.name,
                step=checkpoint_step(ckpt.name),
                verdict=str(leak.get("verdict", "uncalibrated")),
                p_value=leak.get("p_value"),
                holm_p=holm_p,
                evidence=None if holm_p is None else bool(holm_p <= level),
                n_flagged=leak.get("n_flagged"),
                used_lower_bound=leak.get("used_count_lower_bound"),
                n_generated=int(m.get("n_generated", 0)),
                check_p=check.get("p_value"),
            )
        )
    return rows


COLUMNS = (
    "checkpoint", "step", "verdict", "leakage_p", "holm_p", "evidence_after_holm", "flagged",
    "used_lower_bound", "n_generated", "reference_check_p",
)  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value)


def write_comparison_csv(comparison: Comparison, path: str | Path) -> Path:
    """comparison.csv: one row per checkpoint in checkpoint order (text cells never start a formula)."""
    lines = [list(COLUMNS)]
    for r in comparison.rows:
        values = [
            r.name, r.step, r.verdict, r.p_value, r.holm_p, r.evidence, r.n_flagged, r.used_lower_bound,
            r.n_generated, r.check_p,
        ]  # fmt: skip
        lines.append([text_cell(_cell(v)) for v in values])
    return write_csv_atomic(lines, path)


def summary_sentence(comparison: Comparison) -> str:
    """What the series shows, for people: which checkpoints show evidence after Holm, at which level."""
    rows = comparison.rows
    leaking = [r.name for r in rows if r.evidence]
    untested = [r.name for r in rows if r.evidence is None]
    level = f"{comparison.level:g}"
    if leaking:
        text = (
            f"Evidence of training-data leakage at level {level} for {len(leaking)} of {len(rows)} checkpoints "
            f"({', '.join(leaking)}), Holm-adjusted across the {len(rows)} tests."
        )
    elif untested and len(untested) == len(rows):
        text = "No checkpoint could be tested (no reference, or the reference check failed)."
    else:
        text = (
            f"None of the tested checkpoints shows evidence of training-data leakage at level {level} "
            f"(Holm-adjusted across the {len(rows) - len(untested)} tests); that is not proof that any is safe to share."
        )
    if untested and len(untested) < len(rows):
        text += f" Not tested: {', '.join(untested)}."
    return text
