"""What an archive may unpack to, the budget one request (or one CLI source) spends, and member screening.

Every archive of one upload draws on the same `Budget`: its members (every entry counts: files,
folders, links, hidden files) and the bytes it unpacks. A member is screened by its name, kind and
declared size before any of its data is read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import BinaryIO

MIB = 1024 * 1024
GIB = 1024 * MIB
CHUNK = MIB
"""No read, inflate or copy step of an archive handles more than this many bytes at once."""

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz", ".tar.bz2", ".tar.xz")
"""The archive types the CLI and the API read (the compression of a tar is decided by its content)."""


@dataclass(frozen=True)
class ArchiveLimits:
    """Limits of one request's archives; the API's settings of the same names default to these values."""

    max_member_bytes: int = 256 * MIB  # MAX_IMAGE_BYTES: one file or archive member
    max_members: int = 200_000  # MAX_ARCHIVE_MEMBERS: entries of all archives together
    max_extracted_bytes: int = 50 * GIB  # MAX_EXTRACTED_BYTES: bytes unpacked from all archives together
    max_header_bytes: int = MIB  # one tar long-name / PAX header (its data is held in memory to parse)


DEFAULT_LIMITS = ArchiveLimits()


class ArchiveError(Exception):
    """The archive cannot be read on from here (corrupt, truncated, or a header over the limits).

    Members already read are kept; `reason` is fit to report back to the uploader.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class BudgetExceeded(ArchiveError):
    """The request's member or byte budget is spent: this archive stops here, and later ones are skipped."""


class MemberError(Exception):
    """One member cannot be read (corrupt data, encrypted, unsupported compression); the others can."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Budget:
    """Members and bytes left to one request; shared by all of its archives."""

    def __init__(self, limits: ArchiveLimits = DEFAULT_LIMITS) -> None:
        self.limits = limits
        self.members = 0
        self.bytes = 0
        self.spent: str | None = None  # why the budget ran out, once it has

    def check(self) -> None:
        """Raise BudgetExceeded when the budget already ran out (a later archive of the same request)."""
        if self.spent is not None:
            raise BudgetExceeded(self.spent)

    def take_member(self) -> None:
        """Count one archive entry (of any kind)."""
        self.check()
        self.members += 1
        if self.members > self.limits.max_members:
            self._spend(
                f"more than {self.limits.max_members} archive members in the upload; the rest was skipped"
            )

    def charge(self, nbytes: int) -> None:
        """Count bytes unpacked (inflated member data; for a tar, its whole decompressed stream)."""
        self.bytes += nbytes
        if self.bytes > self.limits.max_extracted_bytes:
            self.refuse_bytes()

    def reserve(self, nbytes: int) -> None:
        """Raise BudgetExceeded, counting nothing, when nbytes more would not fit (a declared size)."""
        if self.bytes + nbytes > self.limits.max_extracted_bytes:
            self.refuse_bytes()

    def refuse_bytes(self) -> None:
        self._spend(
            f"the upload unpacks to more than {self.limits.max_extracted_bytes} bytes; the rest was skipped"
        )

    def _spend(self, reason: str) -> None:
        self.spent = reason
        raise BudgetExceeded(reason)


@dataclass(frozen=True)
class Skipped:
    """An entry that is not read, with the reason reported for it."""

    name: str
    reason: str
    fraction: float = 0.0


@dataclass(frozen=True)
class Member:
    """A regular file of an archive that passed screening; `open()` streams its data.

    Its stream is valid until the next member is opened or the archive's iterator moves on.
    """

    name: str  # as stored in the archive (shown back to its uploader only)
    relpath: str  # the name made safe: relative, '/'-separated, no '..'
    size: int  # declared size; the stream never yields more
    opener: Callable[[], BinaryIO]
    fraction: float = 0.0  # how far through the archive it lies, 0..1

    def open(self) -> BinaryIO:
        return self.opener()

    def read(self) -> bytes:
        """All of the member's data (at most `size` <= max_member_bytes bytes)."""
        stream = self.open()
        try:
            return stream.read()
        finally:
            stream.close()


_DRIVE = re.compile(r"^[A-Za-z]:")
_UNSAFE_CHARS = re.compile(r"[\x00-\x1f\x7f\ud800-\udfff]")


def safe_relpath(name: str) -> str | None:
    """A clean relative '/'-path for a member name, or None when it is absolute, climbs out, or holds
    control characters (NUL, newlines), lone surrogates or parts longer than a file name can be."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or _DRIVE.match(norm) or _UNSAFE_CHARS.search(norm):
        return None
    parts = [p for p in norm.split("/") if p not in ("", ".")]
    if not parts or ".." in parts or len("/".join(parts)) > 1000:
        return None
    if any(len(p.encode("utf-8")) > 200 for p in parts):  # room for a suffix within NAME_MAX (255 bytes)
        return None
    return "/".join(parts)


def display_name(name: str) -> str:
    """A file name fit to report back and store: control characters and lone surrogates replaced."""
    return _UNSAFE_CHARS.sub("?", name)[:1000]


def is_hidden(relpath: str) -> bool:
    """Hidden files/folders and macOS resource forks are never images."""
    return any(p.startswith(".") or p == "__MACOSX" for p in PurePosixPath(relpath).parts)


def is_archive_name(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def screen(name: str, kind: str, size: int, limits: ArchiveLimits) -> str | Skipped | None:
    """Decide on an entry from its header: its safe relpath when its data is to be read, a Skipped with
    the reason, or None when it is passed over silently (folders, hidden files).

    kind: "file", "dir", "link" (symlink, hard link) or "special" (device, FIFO, sparse, unknown).
    """
    if kind == "dir":
        return None
    if kind != "file":
        return Skipped(name, "link or special file in archive")
    relpath = safe_relpath(name)
    if relpath is None:
        return Skipped(name, "unsafe path in archive")
    if is_hidden(relpath):
        return None
    if is_archive_name(relpath):
        return Skipped(name, "archives inside archives are not read")
    if size > limits.max_member_bytes:
        return Skipped(name, f"file larger than {limits.max_member_bytes} bytes")
    return relpath
