"""A zip reader that parses the central directory itself, entry by entry, counting as it goes.

Nothing of the directory is kept: each entry is screened and handed on, so a directory of millions of
entries (whatever its end record declares) costs one entry's memory, and the request's member budget
stops it. Member data is read from the local header's position and inflated in bounded steps
(`streams.ZipMemberStream`).
"""

from __future__ import annotations

import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import BinaryIO, cast

from synthaudit.models.archives.limits import ArchiveError, Budget, Member, MemberError, Skipped, screen
from synthaudit.models.archives.streams import ZipMemberStream

_EOCD = struct.Struct(
    "<4sHHHHIIH"
)  # signature, disk, cd disk, entries here, entries, cd size, cd offset, comment
_EOCD64_LOCATOR = struct.Struct("<4sIQI")
_EOCD64 = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
_LOCAL = struct.Struct("<4sHHHHHIIIHH")
_MAX_COMMENT = 0xFFFF
_NOT_READABLE = "not a readable zip archive"


@dataclass(frozen=True)
class _Directory:
    offset: int  # where the central directory starts in the file
    size: int
    shift: int  # bytes prepended to the archive (self-extracting stubs): added to every offset


def _end_record(tail: bytes) -> int:
    """Position of the end-of-central-directory record in the file's tail: the last signature whose
    comment length reaches exactly to the end (its entry counts are not trusted, nor even read)."""
    pos = len(tail)
    while (pos := tail.rfind(b"PK\x05\x06", 0, pos)) >= 0:
        if len(tail) - pos >= _EOCD.size and pos + _EOCD.size + _EOCD.unpack_from(tail, pos)[7] == len(tail):
            return pos
    pos = tail.rfind(b"PK\x05\x06")  # a comment that runs short or long: as zipfile, take the last one
    if pos < 0 or len(tail) - pos < _EOCD.size:
        raise ArchiveError(_NOT_READABLE)
    return pos


def _find_directory(fh: BinaryIO, file_size: int) -> _Directory:
    """Locate the central directory from the end record (and its zip64 form)."""
    tail_size = min(file_size, _EOCD.size + _MAX_COMMENT)
    fh.seek(file_size - tail_size)
    tail = fh.read(tail_size)
    pos = _end_record(tail)
    _sig, disk, cd_disk, _here, _declared, cd_size, cd_offset, _comment = _EOCD.unpack_from(tail, pos)
    end = file_size - tail_size + pos  # where the end record starts
    locator = pos - _EOCD64_LOCATOR.size
    if locator >= 0 and tail[locator : locator + 4] == b"PK\x06\x07":
        fh.seek(end - _EOCD64_LOCATOR.size - _EOCD64.size)
        record = fh.read(_EOCD64.size)
        if len(record) != _EOCD64.size or record[:4] != b"PK\x06\x06":
            raise ArchiveError(_NOT_READABLE)
        fields = _EOCD64.unpack(record)
        disk, cd_disk, cd_size, cd_offset = fields[4], fields[5], fields[8], fields[9]
        end -= _EOCD64_LOCATOR.size + _EOCD64.size
    if disk != 0 or cd_disk != 0:
        raise ArchiveError("multi-disk zip archives are not supported")
    shift = end - cd_size - cd_offset
    if shift < 0:
        raise ArchiveError(_NOT_READABLE)
    return _Directory(cd_offset + shift, cd_size, shift)


@dataclass(frozen=True)
class _Entry:
    name: str
    raw_name: bytes
    flags: int
    method: int
    crc: int
    compressed: int
    size: int
    header_offset: int
    mode: int  # unix file type bits (0 when the archive was made elsewhere)


def _zip64_values(extra: bytes, size: int, compressed: int, offset: int) -> tuple[int, int, int]:
    """Replace the 0xFFFFFFFF fields with the values of the zip64 extra field (0x0001), in their order."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        if tag == 1:
            values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
            out = []
            for field in (size, compressed, offset):
                if field == 0xFFFFFFFF:
                    if not values:
                        raise ArchiveError(_NOT_READABLE)
                    field = values.pop(0)
                out.append(field)
            return out[0], out[1], out[2]
        pos += 4 + length
    return size, compressed, offset


def _entries(fh: BinaryIO, directory: _Directory, budget: Budget) -> Iterator[tuple[_Entry, float]]:
    """The central directory's entries, one at a time, each counted against the budget."""
    fh.seek(directory.offset)
    left = directory.size
    while left > 0:
        head = fh.read(_CENTRAL.size)
        if len(head) != _CENTRAL.size or head[:4] != b"PK\x01\x02":
            raise ArchiveError("zip archive with a corrupt central directory; later members skipped")
        fields = _CENTRAL.unpack(head)
        flags, method, crc, compressed, size = fields[3], fields[4], fields[7], fields[8], fields[9]
        name_len, extra_len, comment_len, disk = fields[10], fields[11], fields[12], fields[13]
        external, offset = fields[15], fields[16]
        variable = fh.read(name_len + extra_len + comment_len)
        left -= _CENTRAL.size + len(variable)
        if len(variable) != name_len + extra_len + comment_len or left < 0:
            raise ArchiveError("zip archive with a corrupt central directory; later members skipped")
        budget.take_member()
        raw_name = variable[:name_len]
        size, compressed, offset = _zip64_values(
            variable[name_len : name_len + extra_len], size, compressed, offset
        )
        encoding = "utf-8" if flags & 0x800 else "cp437"
        name = raw_name.decode(encoding, "surrogateescape")
        mode = stat.S_IFMT(external >> 16)
        if disk not in (0, 0xFFFF):
            raise ArchiveError("multi-disk zip archives are not supported")
        entry = _Entry(name, raw_name, flags, method, crc, compressed, size, offset + directory.shift, mode)
        yield entry, 1.0 - left / max(directory.size, 1)


def _kind(entry: _Entry) -> str:
    if entry.name.endswith(("/", "\\")) or entry.mode == stat.S_IFDIR:
        return "dir"
    if entry.mode in (0, stat.S_IFREG):
        return "file"
    return "link" if entry.mode == stat.S_IFLNK else "special"


def _open_member(fh: BinaryIO, entry: _Entry, budget: Budget) -> BinaryIO:
    """The member's data stream, after checking its local header (raises MemberError).

    It reads from the archive's one data handle: valid until the next member is opened.
    """
    if entry.flags & 0x41:  # traditional or strong encryption
        raise MemberError("encrypted archive member")
    if entry.flags & 0x20:
        raise MemberError("unsupported zip member (patched data)")
    fh.seek(entry.header_offset)
    local = fh.read(_LOCAL.size)
    if len(local) != _LOCAL.size or local[:4] != b"PK\x03\x04":
        raise MemberError("corrupt archive member (bad local header)")
    name_len, extra_len = _LOCAL.unpack(local)[9:11]
    if fh.read(name_len) != entry.raw_name:
        raise MemberError("corrupt archive member (its names differ)")
    fh.seek(extra_len, 1)
    # a raw stream (read, close): what Member.open promises its readers, though not a typing.BinaryIO
    return cast(BinaryIO, ZipMemberStream(fh, entry.compressed, entry.method, entry.size, entry.crc, budget))


def zip_members(path: Path, budget: Budget) -> Iterator[Member | Skipped]:
    """Screen and yield a zip's entries in directory order (raises ArchiveError, BudgetExceeded)."""
    budget.check()
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed below
        data = open(path, "rb")  # noqa: SIM115 - the members' data, read one member at a time
    except OSError:
        raise ArchiveError(_NOT_READABLE) from None
    with fh, data:
        file_size = fh.seek(0, 2)
        directory = _find_directory(fh, file_size)
        if directory.offset + directory.size > file_size:
            raise ArchiveError(_NOT_READABLE)
        for entry, fraction in _entries(fh, directory, budget):
            verdict = screen(entry.name, _kind(entry), entry.size, budget.limits)
            if verdict is None:
                continue
            if isinstance(verdict, Skipped):
                yield Skipped(verdict.name, verdict.reason, fraction)
                continue
            budget.reserve(entry.size)  # BudgetExceeded when it cannot fit: the rest is skipped
            yield Member(
                entry.name, verdict, entry.size, partial(_open_member, data, entry, budget), fraction
            )
