"""The one archive reader of the CLI and the API: zip and tar (plain, gzip, bzip2, xz) within limits.

`read_archive(path, budget)` yields each entry of an archive, screened before its data is read: a
`Member` (a regular file, with a bounded stream of its data) or a `Skipped` (unsafe path, link or
device, nested archive, too large). Folders and hidden files are passed over. All archives of one
request share one `Budget` (members and unpacked bytes); the readers keep no per-entry state, hold no
buffer larger than `CHUNK` (or one `max_header_bytes` tar header), and report a corrupt member, a
corrupt archive or a spent budget as MemberError, ArchiveError or BudgetExceeded (never zlib/lzma
errors).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from synthaudit.models.archives.limits import (
    ARCHIVE_SUFFIXES,
    CHUNK,
    DEFAULT_LIMITS,
    ArchiveError,
    ArchiveLimits,
    Budget,
    BudgetExceeded,
    Member,
    MemberError,
    Skipped,
    display_name,
    is_archive_name,
    is_hidden,
    safe_relpath,
)
from synthaudit.models.archives.tarread import tar_members
from synthaudit.models.archives.zipread import zip_members

__all__ = [
    "ARCHIVE_SUFFIXES",
    "CHUNK",
    "DEFAULT_LIMITS",
    "ArchiveError",
    "ArchiveLimits",
    "Budget",
    "BudgetExceeded",
    "Member",
    "MemberError",
    "Skipped",
    "display_name",
    "is_archive_name",
    "is_hidden",
    "read_archive",
    "safe_relpath",
]


def read_archive(path: Path, budget: Budget, name: str | None = None) -> Iterator[Member | Skipped]:
    """The entries of the archive at path; `name` (default: the file's) decides zip or tar."""
    if (name or path.name).lower().endswith(".zip"):
        return zip_members(path, budget)
    return tar_members(path, budget)
