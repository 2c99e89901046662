"""The Python API for notebooks and training scripts: `synthaudit.audit(...)` -> `Audit`.

A thin face over the same stages as the CLI (`synthaudit.models.stages.run_audit`): the same inputs,
configuration and seed give the same results.csv and the same metrics document as `synthaudit audit`
and `GET /v1/audits/{id}/metrics`. Inputs may be folders, archives, lists of image files or uint8
arrays [N, H, W]; arrays and lists are staged as files in a private temporary folder first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import importlib
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthaudit.models.config import AuditConfig
from synthaudit.models.results import RESULT_FORMATS, ResultRow, read_labels_csv, write_results_csv

ImageSource = str | Path | Sequence[str | Path] | np.ndarray


class AuditError(ValueError):
    """An audit that cannot run on these inputs; the message is the CLI's one line (what and how to fix)."""


class AuditInputError(AuditError):
    """The inputs are missing, empty, unreadable or inconsistent (e.g. a reference that repeats candidates)."""


class AuditConfigError(AuditError):
    """An option has a value the engine does not accept."""


@dataclass
class Audit:
    """One finished audit: the verdict, the per-image rows and what to write (CSV, metrics, report)."""

    rows: list[ResultRow]
    summary: dict[str, Any]
    rejected: dict[str, list[dict[str, str]]]
    workdir: Path
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def calibrated(self) -> bool:
        """True when the verdict rests on a reference that passed the reference check."""
        return bool(self.summary.get("calibrated"))

    @property
    def leakage(self) -> dict[str, Any] | None:
        """The set-level leakage test (verdict, p_value, n_flagged, lower bound, ...); None without a reference."""
        leak = self.summary.get("leakage")
        return dict(leak) if leak else None

    @property
    def reference_check(self) -> dict[str, Any] | None:
        """The blind check of the reference against the candidates; None without a reference."""
        check = self.summary.get("reference_check")
        return dict(check) if check else None

    @property
    def verdict(self) -> str:
        """ "detected", "not_detected", "inconclusive", or "uncalibrated" (no reference: a ranking only)."""
        leak = self.leakage
        return str(leak["verdict"]) if leak else "uncalibrated"

    def metrics(self) -> dict[str, Any]:
        """The metrics document: the same JSON as `GET /v1/audits/{id}/metrics` (audit_id None here)."""
        from synthaudit.models.summary import metrics_document

        return {"audit_id": None, **metrics_document(self.summary, self.rejected)}

    def write_csv(self, path: str | Path, format: str = "synthaudit") -> Path:
        """results.csv as the CLI writes it (`format`: synthaudit or imageclef); returns the path."""
        if format not in RESULT_FORMATS:
            raise AuditConfigError(f"format must be one of {', '.join(RESULT_FORMATS)}, got {format!r}")
        write_results_csv(self.rows, path, fmt=format)
        return Path(path)

    def report(self, path: str | Path) -> Path:
        """The self-contained HTML report (images inline, no scripts); returns the path."""
        from synthaudit.models.report import write_report

        return write_report(self.workdir, path)

    def to_pandas(self) -> Any:
        """The rows as a pandas.DataFrame (pandas is an optional extra: `pip install synthaudit[pandas]`)."""
        try:
            pandas = importlib.import_module("pandas")  # optional: not a dependency of synthaudit
        except ImportError as exc:
            raise ImportError("to_pandas() needs pandas: pip install 'synthaudit[pandas]'") from exc
        return pandas.DataFrame([dataclasses.asdict(row) for row in self.rows])

    def close(self) -> None:
        """Delete the temporary work folder (when the audit made one); the report needs it."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _repr_html_(self) -> str:
        """A short verdict card for Jupyter."""
        from synthaudit.models.reference_check import format_p

        leak, check = self.leakage, self.reference_check
        colour = {"detected": "#b00020", "inconclusive": "#a15c00", "not_detected": "#1b5e20"}.get(
            self.verdict, "#333"
        )
        lines = [f"<b style='color:{colour}'>{html.escape(_headline(self.verdict, leak))}</b>"]
        if leak and self.verdict != "inconclusive":
            lines.append(
                f"p {format_p(float(leak['p_value']))}; {leak['n_flagged']} of {leak['n_candidates']} candidates "
                f"flagged at FDR {leak['fdr']:g}; at least {leak['used_count_lower_bound']} used"
            )
        if check and check.get("message"):
            lines.append(html.escape(str(check["message"])))
        counts = self.summary
        lines.append(
            f"{counts.get('n_real', 0)} real, {counts.get('n_generated', 0)} generated images; method "
            f"{html.escape(str(counts.get('method')))}"
        )
        body = "<br>".join(lines)
        return f"<div style='border:2px solid {colour};padding:6px 10px;border-radius:4px'>{body}</div>"


def _headline(verdict: str, leak: Mapping[str, Any] | None) -> str:
    if verdict == "detected":
        return "Evidence of training-data leakage"
    if verdict == "not_detected":
        return "No evidence of training-data leakage (not proof that the images are safe to share)"
    if verdict == "inconclusive":
        return "Inconclusive: the reference images differ from the candidates"
    return "Uncalibrated: a ranking of the real images only (give a reference for a verdict)"


def _stage(source: ImageSource, folder: Path, prefix: str) -> Path:
    """A folder or archive as given; a uint8 array or a list of files written/copied into `folder`."""
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise AuditInputError(f"{path} does not exist")
        return path
    folder.mkdir(parents=True, exist_ok=True)
    if isinstance(source, np.ndarray):
        from PIL import Image

        if source.dtype != np.uint8 or source.ndim not in (3, 4) or len(source) == 0:
            raise AuditInputError(
                f"{prefix} images as an array must be uint8 [N, H, W] or [N, H, W, 3], got {source.dtype} {source.shape}"
            )
        for i, image in enumerate(source):
            Image.fromarray(image).save(folder / f"{prefix}{i:06d}.png")
        return folder
    for item in source:
        src = Path(item)
        if not src.is_file():
            raise AuditInputError(f"{src} is not a file")
        target = folder / src.name
        if target.exists():
            raise AuditInputError(f"two {prefix} files are named {src.name}: ids come from file names")
        shutil.copyfile(src, target)
    return folder


def audit(
    real: ImageSource,
    generated: ImageSource,
    *,
    reference: ImageSource | None = None,
    labels: Mapping[str, int] | str | Path | None = None,
    method: str = "default",
    fdr: float = 0.1,
    seed: int = 0,
    device: str = "auto",
    workdir: str | Path | None = None,
    progress: bool = True,
    **options: Any,
) -> Audit:
    """Audit `generated` images for leakage of the `real` images they may have been trained on.

    real, generated, reference: a folder, an archive (.zip/.tar*), a list of image files, or a uint8 array
    [N, H, W]. reference: real images known NOT to be in the training set (ideally a random hold-out set
    aside before training): with it the audit gives a calibrated verdict, per-image p-values and a lower
    bound on the number of used images. labels: {id: 1 used / 0 not} for some real images, or an
    `id,label` CSV. options: any other AuditConfig field (k, metric, image_size, decision, ...).
    workdir: keep the work folder there (default: a private temporary folder, removed with `close()`).

    Raises AuditInputError / AuditConfigError with the CLI's one-line messages.

    >>> result = synthaudit.audit("real/", "generated/", reference="holdout/")
    >>> result.verdict, result.leakage["p_value"]
    """
    from synthaudit.models.stages import AuditInputs, run_audit

    config = _config(method, fdr, seed, device, options)
    with _session(workdir, "synthaudit-") as (work, staging, tmp):
        label_map = _labels(labels)
        if config.decision == "fdr" and reference is None and 0 not in (label_map or {}).values():
            raise AuditConfigError(
                "decision 'fdr' needs images known not to be used: labels with used=0 or a reference"
            )
        inputs = AuditInputs(
            _stage(real, staging / "real", "r"),
            _stage(generated, staging / "generated", "g"),
            label_map,
            reference=None if reference is None else _stage(reference, staging / "reference", "q"),
        )
        outcome = _with_progress(
            progress, run_audit, inputs, config, work / "work" if tmp is not None else work
        )
    return Audit(outcome.rows, outcome.metrics, outcome.rejected, outcome.workdir, tmp)


@dataclass
class Series:
    """A comparison of checkpoints: the table in checkpoint order, and each checkpoint's `Audit`."""

    comparison: Any  # synthaudit.models.compare.Comparison
    audits: dict[str, Audit]
    _tmp: tempfile.TemporaryDirectory[str] | None = field(default=None, repr=False)

    @property
    def rows(self) -> list[Any]:
        """One ComparisonRow per checkpoint: verdict, leakage p, Holm-adjusted p, evidence, flags, bound."""
        return list(self.comparison.rows)

    @property
    def summary(self) -> str:
        """Which checkpoints show evidence of leakage after Holm, in one sentence."""
        from synthaudit.models.compare import summary_sentence

        return summary_sentence(self.comparison)

    def write(self, out: str | Path) -> Path:
        """The CLI's output folder: comparison.csv, comparison.html, <checkpoint>/{results.csv, metrics.json}."""
        from synthaudit.models.compare_report import write_comparison_folder

        return write_comparison_folder(self.comparison, out)

    def close(self) -> None:
        """Delete the temporary work folders (when the comparison made them)."""
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def _repr_html_(self) -> str:
        from synthaudit.models.compare_report import render_comparison

        page = render_comparison(self.comparison)
        return page[page.index("<body>") + len("<body>") : page.rindex("</body>")]


def compare(
    real: ImageSource,
    generated: Sequence[str | Path] | Mapping[str, ImageSource],
    *,
    reference: ImageSource | None = None,
    labels: Mapping[str, int] | str | Path | None = None,
    level: float = 0.05,
    method: str = "default",
    fdr: float = 0.1,
    seed: int = 0,
    device: str = "auto",
    workdir: str | Path | None = None,
    progress: bool = True,
    **options: Any,
) -> Series:
    """Audit several generated sets (checkpoints of one generator) against the same real images, decoded
    once: each gets its full verdict; across the series the leakage p-values are Holm-adjusted, so
    "evidence of leakage" for any checkpoint holds at `level` for the whole series.

    generated: folders or archives (named after them), or {name: folder, archive, file list or uint8
    array}. Checkpoints are ordered by the last number in their names (epoch or step).

    >>> series = synthaudit.compare("real/", ["ckpt-010/", "ckpt-020/", "ckpt-040/"], reference="holdout/")
    >>> series.summary
    """
    from synthaudit.models.compare import named_checkpoints, run_comparison, set_name

    config = _config(method, fdr, seed, device, options)
    with _session(workdir, "synthaudit-compare-") as (work, staging, tmp):
        if isinstance(generated, Mapping):
            pairs = [
                (str(n), _stage(src, staging / "generated" / str(n), "g")) for n, src in generated.items()
            ]
        else:
            pairs = [(set_name(src), _stage(src, staging, "g")) for src in generated]
        comparison = _with_progress(
            progress,
            run_comparison,
            _stage(real, staging / "real", "r"),
            named_checkpoints(pairs),
            config,
            work,
            reference=None if reference is None else _stage(reference, staging / "reference", "q"),
            labels=_labels(labels),
            level=level,
        )
    audits = {
        name: Audit(o.rows, o.metrics, o.rejected, o.workdir, None) for name, o in comparison.outcomes.items()
    }
    return Series(comparison, audits, tmp)


def _labels(labels: Mapping[str, int] | str | Path | None) -> dict[str, int] | None:
    if labels is None:
        return None
    if isinstance(labels, str | Path):
        return read_labels_csv(labels)
    return {str(k): int(v) for k, v in labels.items()}


def _config(method: str, fdr: float, seed: int, device: str, options: dict[str, Any]) -> AuditConfig:
    """The engine's config, with an unknown method or a bad value as AuditConfigError before any image is read."""
    from synthaudit.models.methods import get_method

    try:
        config = AuditConfig.from_dict(
            {"method": method, "fdr": fdr, "seed": seed, "device": device, **options}
        )
        get_method(config.method)
    except (TypeError, ValueError) as exc:
        raise AuditConfigError(str(exc)) from exc
    return config


@contextlib.contextmanager
def _session(
    workdir: str | Path | None, prefix: str
) -> Iterator[tuple[Path, Path, tempfile.TemporaryDirectory[str] | None]]:
    """(work folder, private staging folder for arrays and file lists, the temporary work folder or None):
    the staging folder is removed at the end, the temporary work folder only on error (the result keeps
    it); the engine's errors become AuditInputError."""
    tmp = tempfile.TemporaryDirectory(prefix=prefix) if workdir is None else None
    work = Path(tmp.name) if tmp is not None else Path(workdir)  # type: ignore[arg-type]
    staging = Path(tempfile.mkdtemp(prefix="synthaudit-inputs-"))
    try:
        yield work, staging, tmp
    except AuditError:
        if tmp is not None:
            tmp.cleanup()
        raise
    except (ValueError, FileNotFoundError, OSError) as exc:
        if tmp is not None:
            tmp.cleanup()
        raise AuditInputError(str(exc)) from exc
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _with_progress(progress: bool, run: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """run(*args, **kwargs), with stage bars fed through `on_progress` when asked for."""
    if not progress:
        return run(*args, **kwargs)
    from synthaudit.models.progress import stage_bars

    update, close = stage_bars()
    try:
        return run(*args, **kwargs, on_progress=update)
    finally:
        close()
