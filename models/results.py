"""Results and labels CSV files: the synthaudit format and the ImageCLEF submission format."""

from __future__ import annotations

import csv
import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from synthaudit.models.csv_safety import read_text_cell, text_cell, write_csv_atomic
from synthaudit.models.io import IMAGE_SUFFIXES

RESULT_FORMATS = ("synthaudit", "imageclef")
SYNTHAUDIT_HEADER = ["id", "used", "score", "nearest_generated", "similarity", "p_value", "q_value", "role"]
_LEGACY_HEADER = SYNTHAUDIT_HEADER[:5]  # before calibrated verdicts
ROLES = ("candidate", "reference")
_LABEL_HEADERS = {("id", "used"), ("id", "label")}


@dataclass(frozen=True)
class ResultRow:
    """One decision: image id, used (1) or not (0), its score and closest generated image."""

    id: str
    used: int
    score: float
    nearest_generated: str
    similarity: float
    p_value: float | None = None  # conformal p-value against the known-not-used images (None: uncalibrated)
    q_value: float | None = None  # Benjamini-Hochberg adjusted p-value
    role: str = "candidate"  # "reference": a known-not-used image the others were tested against


def _fmt_float(value: float) -> str:
    return "nan" if math.isnan(value) else f"{value:.6f}"


def _fmt_p(value: float | None) -> str:
    """p- and q-values keep their small magnitudes (6 significant digits); empty when absent."""
    return "" if value is None or math.isnan(value) else f"{value:.6g}"


def _imageclef_id(image_id: str) -> str:
    """ImageCLEF wants the bare file stem: the last path component of an id."""
    return image_id.rsplit("/", 1)[-1]


def _synthaudit_lines(rows: list[ResultRow]) -> list[list[str]]:
    body = [
        [
            text_cell(r.id),
            str(int(r.used)),
            _fmt_float(float(r.score)),
            text_cell(r.nearest_generated),
            _fmt_float(float(r.similarity)),
            _fmt_p(r.p_value),
            _fmt_p(r.q_value),
            text_cell(r.role),
        ]
        for r in rows
    ]
    return [SYNTHAUDIT_HEADER, *body]


def _imageclef_lines(rows: list[ResultRow]) -> list[list[str]]:
    ids = [_imageclef_id(r.id) for r in rows]
    dups = sorted(i for i, count in Counter(ids).items() if count > 1)
    if dups:
        raise ValueError(f"ids collide once folders are dropped for ImageCLEF: {', '.join(dups[:10])}")
    return [[text_cell(i), "1" if int(r.used) else "0"] for i, r in zip(ids, rows, strict=True)]


def write_results_csv(rows: Iterable[ResultRow], path: str | Path, fmt: str = "synthaudit") -> None:
    """Write results: 'synthaudit' (header id,used,score,nearest_generated,similarity,p_value,q_value,role)
    or 'imageclef' (id,label lines, no header, ids without folders). Text cells that a spreadsheet would
    run as a formula get a leading `'` (models/csv_safety.py); read_results_csv removes it."""
    if fmt not in RESULT_FORMATS:
        raise ValueError(f"unknown results format {fmt!r}; choose one of {', '.join(RESULT_FORMATS)}")
    rows = list(rows)
    for r in rows:
        if int(r.used) not in (0, 1):
            raise ValueError(f"used must be 0 or 1 for id {r.id!r}, got {r.used!r}")
        if r.role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)} for id {r.id!r}, got {r.role!r}")
    lines = _synthaudit_lines(rows) if fmt == "synthaudit" else _imageclef_lines(rows)
    write_csv_atomic(lines, Path(path))


def write_labels_csv(labels: Iterable[tuple[str, int]], path: str | Path) -> None:
    """Write an `id,used` labels file (as read_labels_csv reads it), atomically, ids formula-guarded."""
    write_csv_atomic([["id", "used"], *([text_cell(i), str(int(u))] for i, u in labels)], Path(path))


def _read_rows(path: str | Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, stripped cells) for every non-blank CSV row."""
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.reader(fh)
        out = []
        for row in reader:
            cells = [c.strip() for c in row]
            if any(cells):
                out.append((reader.line_num, cells))
        return out


def _binary(value: str, line: int, path: str | Path) -> int:
    if value not in ("0", "1"):
        raise ValueError(f"{Path(path).name} line {line}: expected 0 or 1, got {value[:20]!r}")
    return int(value)


def _float(value: str, line: int, path: str | Path) -> float:
    try:
        return float(value)
    except ValueError:
        raise ValueError(f"{Path(path).name} line {line}: expected a number, got {value[:20]!r}") from None


def read_results_csv(path: str | Path) -> list[ResultRow]:
    """Read a results file in either format (ImageCLEF rows get score and similarity nan)."""
    rows = _read_rows(path)
    if rows and [c.lower() for c in rows[0][1]] in (SYNTHAUDIT_HEADER, _LEGACY_HEADER):
        return [_synthaudit_row(line, cells, path) for line, cells in rows[1:]]
    if rows and tuple(c.lower() for c in rows[0][1][:2]) in _LABEL_HEADERS:
        rows = rows[1:]
    out = []
    for line, cells in rows:
        if len(cells) < 2:
            raise ValueError(f"{Path(path).name} line {line}: expected id,label")
        used = _binary(cells[1], line, path)
        out.append(ResultRow(read_text_cell(cells[0]), used, math.nan, "", math.nan))
    return out


def _synthaudit_row(line: int, cells: list[str], path: str | Path) -> ResultRow:
    if len(cells) < 5:
        raise ValueError(f"{Path(path).name} line {line}: expected 5 columns, got {len(cells)}")
    extra = cells[5:8] + [""] * (3 - len(cells[5:8]))
    role = extra[2] or "candidate"
    if role not in ROLES:
        raise ValueError(f"{Path(path).name} line {line}: role must be candidate or reference")
    return ResultRow(
        id=read_text_cell(cells[0]),
        used=_binary(cells[1], line, path),
        score=_float(cells[2], line, path),
        nearest_generated=read_text_cell(cells[3]),
        similarity=_float(cells[4], line, path),
        p_value=_float(extra[0], line, path) if extra[0] else None,
        q_value=_float(extra[1], line, path) if extra[1] else None,
        role=role,
    )


def _label_id(raw: str) -> str:
    """Strip an image extension (img_001.png -> img_001); other dots are part of the id."""
    p = PurePosixPath(raw)
    return str(p.with_suffix("")) if p.suffix.lower() in IMAGE_SUFFIXES else raw


def read_labels_csv(path: str | Path) -> dict[str, int]:
    """Ground-truth labels: `id,used` or `id,label` (header optional); values must be 0 or 1. An id
    copied from a results file with its formula-guard quote (`'=x`) is the id `=x`, as a raw `=x` is."""
    rows = _read_rows(path)
    if rows and tuple(c.lower() for c in rows[0][1][:2]) in _LABEL_HEADERS:
        rows = rows[1:]
    labels: dict[str, int] = {}
    for line, cells in rows:
        if len(cells) < 2 or not cells[0]:
            raise ValueError(f"{Path(path).name} line {line}: expected id and a 0/1 label")
        image_id = _label_id(read_text_cell(cells[0]))
        if image_id in labels:
            raise ValueError(f"{Path(path).name} line {line}: duplicate id {image_id!r}")
        labels[image_id] = _binary(cells[1], line, path)
    return labels


class UnknownLabelsError(ValueError):
    """Label ids that are not among the real images (the API refuses them at submission too)."""

    def __init__(self, unknown: list[str]) -> None:
        shown = ", ".join(unknown[:5]) + (f" (and {len(unknown) - 5} more)" if len(unknown) > 5 else "")
        super().__init__(f"labels: {len(unknown)} id(s) are not among the real images: {shown}")
        self.unknown = unknown


def unknown_labels_error(labels: dict[str, int], real_ids: Iterable[str]) -> UnknownLabelsError | None:
    """The error for label ids that no real image has (None when every id is known)."""
    unknown = sorted(set(labels) - set(real_ids))
    return UnknownLabelsError(unknown) if unknown else None
