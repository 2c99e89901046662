"""synthaudit.models.archives: the one archive reader of the CLI and the API, on good and on hostile archives."""

from __future__ import annotations

import io
import lzma
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import pytest
from hostile_inputs import (
    MIB,
    corrupt_deflate_member,
    corrupt_lzma_member,
    directory_flood_tar_gz,
    gzip_members,
    long_header_tar_gz,
    lying_zip,
    stored_member,
    tar_header,
    zip_of_raw,
)

from synthaudit.models.archives import (
    ArchiveError,
    ArchiveLimits,
    Budget,
    BudgetExceeded,
    Member,
    MemberError,
    Skipped,
    read_archive,
)


def entries(path: Path, budget: Budget | None = None) -> list[tuple[str, str, bytes | str]]:
    """("M", relpath, data) for members, ("S", name, reason) for skipped entries."""
    out: list[tuple[str, str, bytes | str]] = []
    for item in read_archive(path, budget or Budget()):
        if isinstance(item, Member):
            out.append(("M", item.relpath, item.read()))
        else:
            assert isinstance(item, Skipped)
            out.append(("S", item.name, item.reason))
    return out


def write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


# --- zip ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED, zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA]
)
def test_zip_members_read_as_zipfile_writes_them(tmp_path: Path, method: int) -> None:
    payload = bytes(range(256)) * 500 + b"\0" * 100_000
    path = tmp_path / "a.zip"
    with zipfile.ZipFile(path, "w", method) as zf:
        zf.writestr("set/a.png", payload)
        zf.writestr("set/", b"")
        zf.writestr("set/.hidden.png", b"x")
        zf.writestr("__MACOSX/._a.png", b"x")
        zf.writestr("../up.png", b"x")
        zf.writestr("inner.tar.gz", b"x")
        with zf.open("set/big.bin", "w", force_zip64=True) as member:
            member.write(b"q" * 70_000)
    budget = Budget()
    assert entries(path, budget) == [
        ("M", "set/a.png", payload),
        ("S", "../up.png", "unsafe path in archive"),
        ("S", "inner.tar.gz", "archives inside archives are not read"),
        ("M", "set/big.bin", b"q" * 70_000),
    ]
    assert budget.members == 7  # every entry counts, folders and hidden files too
    assert budget.bytes == len(payload) + 70_000


def test_a_zip_behind_a_stub_and_with_a_comment_is_read(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.png", b"data")
        zf.comment = b"PK\x05\x06 a comment that looks like an end record"
    path = write(tmp_path, "sfx.zip", b"#!/bin/sh\nexit 0\n" + buf.getvalue())
    assert entries(path) == [("M", "a.png", b"data")]


def test_zip_links_devices_and_oversized_members_are_skipped_unread(tmp_path: Path) -> None:
    path = tmp_path / "links.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for name, mode in (("link.png", 0o120777), ("dev.png", 0o020666), ("fifo.png", 0o010644)):
            info = zipfile.ZipInfo(name)
            info.external_attr = mode << 16
            zf.writestr(info, b"/etc/passwd")
        zf.writestr("big.png", b"x" * 5000)
    got = entries(path, Budget(ArchiveLimits(max_member_bytes=4096)))
    assert got == [
        ("S", "link.png", "link or special file in archive"),
        ("S", "dev.png", "link or special file in archive"),
        ("S", "fifo.png", "link or special file in archive"),
        ("S", "big.png", "file larger than 4096 bytes"),
    ]


def test_the_member_count_is_taken_while_the_directory_is_read(tmp_path: Path) -> None:
    """#5: the end record says 1 entry; 5000 follow. Counting stops at the limit, whatever it declares."""
    path = write(tmp_path, "lying.zip", lying_zip(5000, declared=1))
    budget = Budget(ArchiveLimits(max_members=100))
    seen = 0
    with pytest.raises(BudgetExceeded, match="more than 100 archive members in the upload"):
        for _ in read_archive(path, budget):
            seen += 1
    assert seen == 100 and budget.members == 101
    with pytest.raises(BudgetExceeded):  # the request's later archives are skipped at once
        next(iter(read_archive(path, budget)))


def _member_error(path: Path) -> str:
    items = iter(read_archive(path, Budget()))  # a member can be read while its iterator lives
    member = next(items)
    assert isinstance(member, Member)
    with pytest.raises(MemberError) as err:
        member.read()
    return err.value.reason


def test_corrupt_zip_members_are_member_errors_never_zlib_or_lzma_errors(tmp_path: Path) -> None:
    """#14: zlib.error and LZMAError from a member's data become MemberError (a rejected member)."""
    for raw in (corrupt_deflate_member(), corrupt_lzma_member()):
        assert _member_error(write(tmp_path, "bad.zip", zip_of_raw([raw]))) == "corrupt archive member"
    bzip = ("bad.png", 12, b"BZh9" + b"\xff" * 40, 100, 0)
    assert _member_error(write(tmp_path, "bad.zip", zip_of_raw([bzip]))) == "corrupt archive member"
    data = b"image bytes"
    bad_crc = ("a.png", 0, data, len(data), zlib.crc32(data) ^ 1)
    assert "CRC" in _member_error(write(tmp_path, "crc.zip", zip_of_raw([bad_crc])))
    short = ("a.png", 0, data, len(data) + 5, zlib.crc32(data))
    assert "truncated" in _member_error(write(tmp_path, "short.zip", zip_of_raw([short])))
    aes = ("a.png", 99, data, len(data), 0)
    assert "compression method 99" in _member_error(write(tmp_path, "aes.zip", zip_of_raw([aes])))


def test_a_zip_member_inflates_no_further_than_its_header_declares(tmp_path: Path) -> None:
    zeros = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = zeros.compress(bytes(64 * MIB)) + zeros.flush()
    path = write(tmp_path, "liar.zip", zip_of_raw([("liar.png", 8, raw, 1024, 0)]))
    assert "more data than its header declares" in _member_error(path)


def test_overlapping_zip_entries_are_bounded_by_the_byte_budget(tmp_path: Path) -> None:
    """A quine-like zip: 100 directory entries all pointing at one 8 MiB member."""
    zeros = zlib.compressobj(9, zlib.DEFLATED, -15)
    raw = zeros.compress(bytes(8 * MIB)) + zeros.flush()
    one = zip_of_raw([("a.png", 8, raw, 8 * MIB, zlib.crc32(bytes(8 * MIB)))])
    cd_start = one.index(b"PK\x01\x02")
    entry, end = one[cd_start : one.index(b"PK\x05\x06")], one[one.index(b"PK\x05\x06") :]
    central = entry * 100
    end = end[:12] + struct.pack("<II", len(central), cd_start) + end[20:]
    path = write(tmp_path, "overlap.zip", one[:cd_start] + central + end)
    budget = Budget(ArchiveLimits(max_extracted_bytes=40 * MIB))
    with pytest.raises(BudgetExceeded, match="unpacks to more than"):
        entries(path, budget)
    assert budget.bytes == 40 * MIB  # five members read whole; the sixth refused from its declared size


def test_not_a_zip(tmp_path: Path) -> None:
    for data in (b"", b"PK\x03\x04 not really", b"x" * 100_000):
        with pytest.raises(ArchiveError, match="not a readable zip"):
            entries(write(tmp_path, "x.zip", data))


# --- tar ----------------------------------------------------------------------------------------------


def _tar(members: list[tuple[str, bytes]], fmt: int = tarfile.GNU_FORMAT, mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as tf:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.mark.parametrize("mode", ["w", "w:gz", "w:bz2", "w:xz"])
@pytest.mark.parametrize("fmt", [tarfile.GNU_FORMAT, tarfile.PAX_FORMAT, tarfile.USTAR_FORMAT])
def test_tar_members_long_names_and_compressions(tmp_path: Path, mode: str, fmt: int) -> None:
    long_name = "d/" + "n" * 90 + "/" + "é" * 40 + ".png"  # GNU long name / PAX path / ustar prefix
    members = [(long_name, b"a" * 1000), ("b.png", b"b" * 513), ("empty.png", b"")]
    path = write(tmp_path, "set.tar", _tar(members, fmt, mode))
    assert entries(path) == [("M", name, data) for name, data in members]


def test_tar_links_devices_folders_and_unsafe_paths(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, kind in [
            ("dir", tarfile.DIRTYPE),
            ("s.png", tarfile.SYMTYPE),
            ("h.png", tarfile.LNKTYPE),
            ("c.png", tarfile.CHRTYPE),
            ("f.png", tarfile.FIFOTYPE),
            ("../x.png", tarfile.REGTYPE),
            (".git/x.png", tarfile.REGTYPE),
            ("ok.png", tarfile.REGTYPE),
        ]:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE) else ""
            tf.addfile(info, io.BytesIO(b""))
    budget = Budget()
    got = entries(write(tmp_path, "t.tar", buf.getvalue()), budget)
    assert [g[1] for g in got if g[0] == "S" and g[2] == "link or special file in archive"] == [
        "s.png",
        "h.png",
        "c.png",
        "f.png",
    ]
    assert ("S", "../x.png", "unsafe path in archive") in got and ("M", "ok.png", b"") in got
    assert budget.members == 8


@pytest.mark.parametrize("typeflag", [b"L", b"x"])
def test_an_extension_header_over_the_limit_stops_the_archive_unread(tmp_path: Path, typeflag: bytes) -> None:
    """#2: the header declares 512 MiB; nothing of it is read (the byte budget sees only its 512-byte header)."""
    path = write(tmp_path, "long.tar.gz", long_header_tar_gz(typeflag, 512 * MIB))
    budget = Budget()
    with pytest.raises(ArchiveError, match="extension header of 536870912 bytes, more than 1048576"):
        entries(path, budget)
    assert budget.bytes <= 2 * MIB


def test_tar_headers_that_break_the_rules(tmp_path: Path) -> None:
    good = _tar([("a.png", b"x")])
    broken = bytearray(good)
    broken[0:5] = b"zzzzz"  # checksum no longer matches
    with pytest.raises(ArchiveError, match="not a readable tar archive"):
        entries(write(tmp_path, "b.tar", bytes(broken)))
    with pytest.raises(ArchiveError, match="empty file"):
        entries(write(tmp_path, "e.tar", b""))
    many = b"".join(tar_header("././@LongLink", b"L", 0) for _ in range(17)) + good
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        entries(write(tmp_path, "m.tar", many))
    cut = write(tmp_path, "cut.tar", good[: 512 + 100])
    with pytest.raises(ArchiveError, match="truncated"):
        entries(cut)
    gz = bytearray(gzip_members([good]))
    gz[20:40] = b"\xff" * 20
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        entries(write(tmp_path, "c.tar.gz", bytes(gz)))
    xz = bytearray(lzma.compress(good))
    xz[30:60] = b"\x00" * 30
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        entries(write(tmp_path, "c.tar.xz", bytes(xz)))


def test_a_base256_size_field_is_read(tmp_path: Path) -> None:
    header = bytearray(tar_header("a.png", b"0", 0))
    header[124:136] = b"\x80" + (3000).to_bytes(11, "big")
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    data = bytes(header) + b"z" * 3000 + bytes(-3000 % 512) + bytes(1024)
    assert entries(write(tmp_path, "b256.tar", data)) == [("M", "a.png", b"z" * 3000)]


def test_directory_headers_are_counted_and_not_kept(tmp_path: Path) -> None:
    """#6: folders count as members; nothing per header is kept."""
    path = write(tmp_path, "dirs.tar.gz", directory_flood_tar_gz(20_000))
    budget = Budget(ArchiveLimits(max_members=5000))
    with pytest.raises(BudgetExceeded, match="more than 5000 archive members"):
        entries(path, budget)


def test_skipped_tar_data_is_charged_to_the_byte_budget(tmp_path: Path) -> None:
    """A gzip bomb hidden in a member that is skipped (hidden, too large) still stops at the budget."""
    header = tar_header(".hidden.png", b"0", 256 * MIB)
    data = gzip_members([header, *[bytes(16 * MIB)] * 16, bytes(1024)])
    budget = Budget(ArchiveLimits(max_extracted_bytes=32 * MIB))
    with pytest.raises(BudgetExceeded, match=f"unpacks to more than {32 * MIB} bytes"):
        entries(write(tmp_path, "bomb.tar.gz", data), budget)


def test_one_budget_spans_the_archives_of_a_request(tmp_path: Path) -> None:
    """#7: the second archive gets what the first left."""
    first = write(tmp_path, "a.tar", _tar([(f"a{i}.png", b"x") for i in range(6)]))
    second = write(tmp_path, "b.zip", zip_of_raw([stored_member(f"b{i}.png", b"y") for i in range(6)]))
    budget = Budget(ArchiveLimits(max_members=10))
    assert len(entries(first, budget)) == 6
    got: list[str] = []
    with pytest.raises(BudgetExceeded, match="more than 10 archive members in the upload"):
        for item in read_archive(second, budget):
            got.append(item.name)
    assert got == ["b0.png", "b1.png", "b2.png", "b3.png"]
