"""A tar reader that parses the headers itself: bounded extension headers, every entry counted, no
header kept.

`tarfile` reads a GNU long-name (`L`) or PAX (`x`) header's whole data into memory, whatever size it
declares, and keeps every header it has seen. Here an extension header larger than
`max_header_bytes` stops the archive before its data is read, each entry is counted against the
request's member budget as it is met, and the decompressed stream is charged to its byte budget.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, cast

from synthaudit.models.archives.limits import ArchiveError, Budget, Member, Skipped, screen
from synthaudit.models.archives.streams import TAR_CORRUPT, TarStream

BLOCK = 512
_ZERO_BLOCK = bytes(BLOCK)
MAX_EXTENSION_HEADERS = 16
"""Extension headers (L, K, x, g) allowed in a row before a member."""
_CORRUPT = TAR_CORRUPT
_KINDS = {b"0": "file", b"\0": "file", b"7": "file", b"5": "dir", b"1": "link", b"2": "link"}


def _number(field: bytes) -> int:
    """A header's numeric field: octal text, or GNU base-256 (first byte 0x80 / 0xff)."""
    if field[:1] in (b"\x80", b"\xff"):
        value = int.from_bytes(field[1:], "big")
        return value - 256 ** (len(field) - 1) if field[:1] == b"\xff" else value
    text = field.split(b"\0", 1)[0].strip(b" ")
    try:
        return int(text or b"0", 8)
    except ValueError:
        raise ArchiveError(_CORRUPT) from None


def _text(field: bytes) -> str:
    return field.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")


_SIGNED = struct.Struct("148b8x356b")


def _checksum_ok(block: bytes) -> bool:
    """The header's checksum, as the unsigned (POSIX) or the signed (old tars) sum of its bytes."""
    stored = _number(block[148:156])
    unsigned = sum(block) - sum(block[148:156]) + 8 * 32
    return stored == unsigned or stored == sum(_SIGNED.unpack(block)) + 8 * 32


@dataclass(frozen=True)
class _Header:
    name: str
    kind: str
    size: int  # bytes of data that follow the header (without padding)
    typeflag: bytes


def _parse_header(block: bytes) -> _Header:
    if not _checksum_ok(block):
        raise ArchiveError(_CORRUPT)
    typeflag = block[156:157]
    name = _text(block[0:100])
    if block[257:265] == b"ustar\x0000" and block[345:346] != b"\0":
        name = f"{_text(block[345:500])}/{name}"
    size = _number(block[124:136])
    if size < 0:
        raise ArchiveError(_CORRUPT)
    kind = _KINDS.get(typeflag, "special")
    if kind == "file" and name.endswith("/"):
        kind = "dir"
    return _Header(name, kind, size, typeflag)


def _pax_records(data: bytes) -> dict[str, str]:
    """The records of a PAX header ("<length> <key>=<value>\\n" each)."""
    records: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos : pos + 1] != b"\0":
        space = data.find(b" ", pos, pos + 20)
        length = int(data[pos:space]) if space > pos and data[pos:space].isdigit() else 0
        record = data[space + 1 : pos + length]
        if length <= 0 or pos + length > len(data) or not record.endswith(b"\n") or b"=" not in record:
            raise ArchiveError(_CORRUPT)
        key, value = record[:-1].split(b"=", 1)
        records[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return records


def _padded(size: int) -> int:
    return -(-size // BLOCK) * BLOCK


class _TarReader:
    """Walks the headers of one tar stream."""

    def __init__(self, stream: TarStream, raw: BinaryIO, file_size: int, budget: Budget) -> None:
        self.stream, self.raw, self.file_size, self.budget = stream, raw, file_size, budget
        self.pending = 0  # data (with padding) of the current member not read yet

    def fraction(self) -> float:
        return min(self.raw.tell() / max(self.file_size, 1), 1.0)

    def headers(self) -> Iterator[_Header]:
        """Each entry's header, with its long name / PAX path and size applied."""
        first, extensions = True, 0
        overrides: dict[str, str] = {}
        while True:
            if self.pending:
                self.stream.skip(self.pending)
                self.pending = 0
            block = self.stream.read(BLOCK)
            if not block or block == _ZERO_BLOCK:
                if first and not block:
                    raise ArchiveError("not a readable tar archive (empty file)")
                return  # the end-of-archive marker (or a clean end without one)
            if len(block) != BLOCK:
                raise ArchiveError(_CORRUPT)
            try:
                header = _parse_header(block)
            except ArchiveError:
                raise ArchiveError("not a readable tar archive" if first else _CORRUPT) from None
            first = False
            if header.typeflag in (b"L", b"K", b"x", b"g"):
                extensions += 1
                if extensions > MAX_EXTENSION_HEADERS:
                    raise ArchiveError(_CORRUPT)
                overrides.update(self._extension(header))
                continue
            self.budget.take_member()
            name = overrides.get("path", header.name)
            size = int(overrides["size"]) if overrides.get("size", "").isdigit() else header.size
            kind = "special" if any(k.startswith("GNU.sparse") for k in overrides) else header.kind
            extensions, overrides = 0, {}
            self.pending = _padded(size)
            yield _Header(name, kind, size, header.typeflag)

    def _extension(self, header: _Header) -> dict[str, str]:
        """Read one long-name / PAX header (bounded) and return what it sets for the next entry."""
        limit = self.budget.limits.max_header_bytes
        if header.size > limit:
            raise ArchiveError(
                f"tar extension header of {header.size} bytes, more than {limit}; later members skipped"
            )
        data = self.stream.read_exact(_padded(header.size))[: header.size]
        if header.typeflag == b"L":
            return {"path": data.split(b"\0", 1)[0].decode("utf-8", "surrogateescape")}
        if header.typeflag == b"x":
            records = _pax_records(data)
            return {k: v for k, v in records.items() if k in ("path", "size") or k.startswith("GNU.sparse")}
        return {}  # K (long link name: links are refused anyway), g (global: nothing we use)

    def member_stream(self, size: int) -> _TarMemberStream:
        return _TarMemberStream(self, size)


class _TarMemberStream:
    """The data of the current member, read straight from the tar stream."""

    def __init__(self, reader: _TarReader, size: int) -> None:
        self.reader, self.left = reader, size

    def read(self, size: int = -1) -> bytes:
        n = self.left if size is None or size < 0 else min(size, self.left)
        if n <= 0:
            return b""
        data = self.reader.stream.read_exact(n)
        self.left -= n
        self.reader.pending -= n
        return data

    def close(self) -> None:
        pass

    def as_file(self) -> BinaryIO:
        """This stream as Member.open gives it: it reads and closes like a binary file, though not a BinaryIO."""
        return cast(BinaryIO, self)


def tar_members(path: Path, budget: Budget) -> Iterator[Member | Skipped]:
    """Screen and yield a tar's entries in order (raises ArchiveError, BudgetExceeded).

    A member's stream must be read (or left) before the next entry is asked for.
    """
    budget.check()
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        raise ArchiveError("not a readable tar archive") from None
    with raw:
        file_size = raw.seek(0, 2)
        raw.seek(0)
        stream = TarStream(raw, budget)
        reader = _TarReader(stream, raw, file_size, budget)
        try:
            for header in reader.headers():
                verdict = screen(header.name, header.kind, header.size, budget.limits)
                if verdict is None:
                    continue
                if isinstance(verdict, Skipped):
                    yield Skipped(verdict.name, verdict.reason, reader.fraction())
                    continue
                data = reader.member_stream(header.size)
                yield Member(header.name, verdict, header.size, data.as_file, reader.fraction())
        finally:
            stream.close()
