"""CSV formula injection: the one rule for the text cells of every CSV file synthaudit writes.

Image ids come from file names, and a spreadsheet opening a CSV runs a cell that begins with `=`, `+`,
`-` or `@` (or a tab or carriage return before one) as a formula: `=cmd|' /C calc'!A0`, `@SUM(A1)`.
Following OWASP ("CSV Injection"), a text cell (an id, a generated image's id, a patient key, a role)
that begins with one of `= + - @`, a tab, a carriage return, or the full-width `＝ ＋ － ＠` is written with
a leading `'`, which spreadsheets show as text. Numeric cells (scores, p-values, counts) are never
touched: they are numbers the writer formats itself, so a score of -0.5 stays `-0.5`.

Cells are quoted as the csv module's QUOTE_MINIMAL quotes them, and also when they hold a carriage
return (Python's csv writer with `\n` line endings leaves a bare CR unquoted, and a spreadsheet starts a
new row there: `a\r=1+1` would put `=1+1` at the start of a row).

The rule is reversible, so `synthaudit evaluate` and the report read back the ids they wrote: a cell
whose quotes are followed by a trigger character gets one more quote on writing (`'=x` becomes `''=x`),
and the readers remove exactly one leading quote from such a cell. A labels file a user writes with the
raw id (`=x`) reads as `=x` too, since only a quoted cell is changed.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

# ASCII triggers (OWASP) and their full-width forms (U+FF1D, U+FF0B, U+FF0D, U+FF20).
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\uff1d", "\uff0b", "\uff0d", "\uff20")
QUOTE = "'"


def _needs_quote(text: str) -> bool:
    """True when the text, after any leading quotes, begins with a formula trigger."""
    return text.lstrip(QUOTE).startswith(FORMULA_TRIGGERS)


def text_cell(text: str) -> str:
    """The value to write for a text cell: a leading `'` when a spreadsheet would run it as a formula."""
    return QUOTE + text if _needs_quote(text) else text


def read_text_cell(cell: str) -> str:
    """The text a cell written by `text_cell` stands for (its inverse; other cells stay as they are)."""
    return cell[1:] if cell.startswith(QUOTE) and _needs_quote(cell) else cell


def csv_field(cell: str) -> str:
    """One field as written: in double quotes (inner quotes doubled) when it holds `,` `"` CR or LF."""
    if any(c in cell for c in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def write_csv_atomic(lines: Iterable[list[str]], path: str | Path) -> Path:
    """Write CSV rows (`\n` line ends, UTF-8) to a private temp file next to path, fsync it, then
    os.replace it into place. Text cells must already have passed through text_cell."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="", encoding="utf-8") as fh:
            for row in lines:
                fh.write(",".join(csv_field(c) for c in row) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
