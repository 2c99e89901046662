"""Bounded streams: a zip member's data inflated chunk by chunk, and a tar's decompressed byte stream.

Each `read` inflates at most CHUNK bytes per step (the decompressors are called with `max_length`), so a
bomb never becomes one large buffer; every byte produced is charged to the request's Budget.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from typing import Any, BinaryIO, Protocol

from synthaudit.models.archives.limits import CHUNK, ArchiveError, Budget, MemberError

STORED, DEFLATED, BZIP2, LZMA = 0, 8, 12, 14
TAR_CORRUPT = "not a readable tar archive (truncated or corrupt); later members skipped"
DECOMPRESSION_ERRORS = (zlib.error, lzma.LZMAError, OSError, EOFError, ValueError)


class _Decompressor(Protocol):
    eof: bool

    def decompress(self, data: bytes, max_length: int = -1) -> bytes: ...


class _Stored:
    """The identity 'decompressor' of stored members."""

    eof = False

    def __init__(self) -> None:
        self.pending = b""

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        data = self.pending + data
        if max_length < 0:
            max_length = len(data)
        out, self.pending = data[:max_length], data[max_length:]
        return out

    @property
    def needs_input(self) -> bool:
        return not self.pending


class _Deflate:
    """zlib's raw inflate behind the bz2/lzma decompressor interface (needs_input, eof)."""

    def __init__(self) -> None:
        self.inner = zlib.decompressobj(-zlib.MAX_WBITS)

    @property
    def eof(self) -> bool:
        return self.inner.eof

    @property
    def needs_input(self) -> bool:
        return not self.inner.unconsumed_tail

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        return self.inner.decompress(self.inner.unconsumed_tail + data, max(max_length, 0))


class _ZipLzma:
    """A zip member's LZMA data: a 4-byte header (version, properties size), the properties, raw LZMA1."""

    def __init__(self) -> None:
        self.head = b""
        self.inner: Any = None

    @property
    def eof(self) -> bool:
        return bool(self.inner is not None and self.inner.eof)

    @property
    def needs_input(self) -> bool:
        return self.inner is None or self.inner.needs_input

    def decompress(self, data: bytes, max_length: int = -1) -> bytes:
        if self.inner is None:
            self.head += data
            if len(self.head) < 4:
                return b""
            size = int.from_bytes(self.head[2:4], "little")
            if len(self.head) < 4 + size:
                return b""
            props = self.head[4 : 4 + size]
            # the stdlib's only parser of LZMA1 properties is private to CPython
            parse = lzma._decode_filter_properties  # type: ignore[attr-defined]  # private, not in typeshed
            filters = [parse(lzma.FILTER_LZMA1, props)]
            self.inner = lzma.LZMADecompressor(lzma.FORMAT_RAW, filters=filters)
            data, self.head = self.head[4 + size :], b""
        return bytes(self.inner.decompress(data, max_length))


def _decompressor(method: int) -> Any:
    if method == STORED:
        return _Stored()
    if method == DEFLATED:
        return _Deflate()
    if method == BZIP2:
        return bz2.BZ2Decompressor()
    if method == LZMA:
        return _ZipLzma()
    raise MemberError(f"unsupported compression method {method} in archive")


class ZipMemberStream(io.RawIOBase):
    """The data of one zip member: at most `size` bytes, CRC-checked at the end, charged to the budget.

    Raises MemberError for corrupt, truncated or oversized data.
    """

    def __init__(
        self, fh: BinaryIO, compressed: int, method: int, size: int, crc: int, budget: Budget
    ) -> None:
        super().__init__()
        self.fh, self.left_in, self.size, self.crc, self.budget = fh, compressed, size, crc, budget
        self.decomp = _decompressor(method)
        self.produced, self.running_crc, self.done = 0, 0, False

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._step(min(len(buffer), CHUNK))
        buffer[: len(data)] = data
        return len(data)

    def read(self, size: int = -1) -> bytes:
        """Up to `size` bytes (all the rest when negative), fewer only at the end of the member."""
        want = self.size - self.produced + 1 if size is None or size < 0 else size
        parts, got = [], 0
        while got < want:
            data = self._step(min(want - got, CHUNK))
            if not data:
                break
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def _step(self, n: int) -> bytes:
        """At most n bytes of output; b'' at the end (after checking the size and the CRC)."""
        if self.done or n <= 0:
            return b""
        try:
            out = self._inflate(n)
        except DECOMPRESSION_ERRORS:
            raise MemberError("corrupt archive member") from None
        if not out:
            self._finish()
            return b""
        self.produced += len(out)
        if self.produced > self.size:
            raise MemberError("corrupt archive member (more data than its header declares)")
        self.budget.charge(len(out))
        self.running_crc = zlib.crc32(out, self.running_crc)
        return out

    def _inflate(self, n: int) -> bytes:
        stalled = 0
        while not self.decomp.eof:
            data = b""
            if self.decomp.needs_input:
                if self.left_in <= 0:  # all input given: only what the decompressor still holds
                    return bytes(self.decomp.decompress(b"", n))
                data = self.fh.read(min(self.left_in, CHUNK))
                if not data:
                    raise MemberError("corrupt archive member (truncated)")
                self.left_in -= len(data)
            out = self.decomp.decompress(data, n)
            if out:
                return bytes(out)
            stalled = 0 if data else stalled + 1
            if stalled > 2:  # buffered input that yields nothing: never loop on it
                raise MemberError("corrupt archive member")
        return b""

    def _finish(self) -> None:
        self.done = True
        if self.produced != self.size:
            raise MemberError("corrupt archive member (truncated)")
        if self.running_crc != self.crc:
            raise MemberError("corrupt archive member (CRC mismatch)")


class TarStream:
    """The decompressed bytes of a (gzip, bzip2, xz or plain) tar, read in bounded steps and charged.

    Decompression errors become ArchiveError: a tar cannot be read on past them.
    """

    def __init__(self, raw: BinaryIO, budget: Budget) -> None:
        self.raw, self.budget = raw, budget
        magic = raw.read(6)
        raw.seek(0)
        if magic.startswith(b"\x1f\x8b"):
            self.inner: BinaryIO | io.BufferedIOBase = gzip.GzipFile(fileobj=raw)
        elif magic.startswith(b"BZh"):
            self.inner = bz2.BZ2File(raw)
        elif magic.startswith(b"\xfd7zXZ\x00"):
            self.inner = lzma.LZMAFile(raw)  # noqa: SIM115 - closed with the stream
        else:
            self.inner = raw
        self.buffer, self.pos = b"", 0  # decompressed bytes read ahead (at most CHUNK)

    def read(self, n: int) -> bytes:
        """Up to n bytes (fewer only at the end of the stream)."""
        if n <= len(self.buffer) - self.pos:  # the common case: a header from the buffer
            data = self.buffer[self.pos : self.pos + n]
            self.pos += n
            return data
        parts, got = [self.buffer[self.pos :]], len(self.buffer) - self.pos
        self.buffer, self.pos = b"", 0
        while got < n:
            data = self._fill()
            if not data:
                break
            take = min(len(data), n - got)
            parts.append(data[:take])
            got += take
            if take < len(data):
                self.buffer, self.pos = data, take
        return b"".join(parts)

    def _fill(self) -> bytes:
        """The next CHUNK (at most) of the decompressed stream, charged to the budget."""
        try:
            data = self.inner.read(CHUNK)
        except DECOMPRESSION_ERRORS:
            raise ArchiveError(
                "not a readable tar archive (truncated or corrupt); later members skipped"
            ) from None
        self.budget.charge(len(data))
        return data

    def read_exact(self, n: int) -> bytes:
        data = self.read(n)
        if len(data) != n:
            raise ArchiveError(TAR_CORRUPT)
        return data

    def skip(self, n: int) -> None:
        while n > 0:
            n -= len(self.read_exact(min(n, CHUNK)))

    def close(self) -> None:
        if self.inner is not self.raw:
            self.inner.close()
