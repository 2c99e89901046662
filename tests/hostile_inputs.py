"""Hostile archives and DICOM files, built byte by byte by the tests that send them (API and CLI alike).

Each is small on the wire and large (or endless) once unpacked the naive way: a tar whose first
header is a GNU long name or a PAX header declaring hundreds of MiB, a million directory headers, a
zip whose end record declares one entry in front of a million, members whose deflate or LZMA data is
corrupt, a DICOM data set in the deflated transfer syntax, a multi-frame RLE DICOM past the pixel limit.
"""

from __future__ import annotations

import gzip
import io
import struct
import tarfile
import zlib
from collections.abc import Iterable

MIB = 1024 * 1024


def gzip_members(parts: Iterable[bytes]) -> bytes:
    """The parts as one gzip member each (a valid multi-member gzip file; repeated parts cost nothing)."""
    cache: dict[bytes, bytes] = {}
    out = []
    for part in parts:
        if part not in cache:
            cache[part] = gzip.compress(part, compresslevel=9, mtime=0)
        out.append(cache[part])
    return b"".join(out)


def _deflate_repeated(prefix: bytes, block: bytes, count: int, suffix: bytes, wbits: int = -15) -> bytes:
    """One raw deflate stream of prefix + block * count + suffix, the block compressed only once: a full
    flush before and after it makes it stand alone, so repeating its bytes repeats it."""
    comp = zlib.compressobj(9, zlib.DEFLATED, wbits)
    head = comp.compress(prefix) + comp.flush(zlib.Z_FULL_FLUSH)
    middle = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    return head + middle * count + comp.compress(suffix) + comp.flush()


def gzip_repeated(prefix: bytes, block: bytes, count: int, suffix: bytes) -> bytes:
    """A single-member gzip file of prefix + block * count + suffix (what `tarfile`'s stream mode reads)."""
    crc = zlib.crc32(prefix)
    for _ in range(count):
        crc = zlib.crc32(block, crc)
    crc = zlib.crc32(suffix, crc)
    size = len(prefix) + len(block) * count + len(suffix)
    body = _deflate_repeated(prefix, block, count, suffix)
    return b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff" + body + struct.pack("<II", crc, size & 0xFFFFFFFF)


def raw_deflate_of_zeros(prefix: bytes, n: int) -> bytes:
    """One raw deflate stream of prefix + n zeros."""
    full, rest = divmod(n, 16 * MIB)
    return _deflate_repeated(prefix, bytes(16 * MIB), full, bytes(rest))


def tar_header(name: str, typeflag: bytes, size: int) -> bytes:
    """One 512-byte ustar header block with a valid checksum."""
    info = tarfile.TarInfo(name)
    info.size = size
    info.type = typeflag
    return info.tobuf(format=tarfile.USTAR_FORMAT)


def long_header_tar_gz(typeflag: bytes, declared: int) -> bytes:
    """A .tar.gz whose first header is a GNU long name (b"L") or PAX header (b"x") of `declared` bytes
    (zeros: tarfile reads all of them into memory before it looks at them)."""
    header = tar_header("././@LongLink", typeflag, declared)
    full, rest = divmod(declared + -declared % 512, 16 * MIB)
    return gzip_repeated(header, bytes(16 * MIB), full, bytes(rest) + bytes(1024))


def directory_flood_tar_gz(count: int) -> bytes:
    """A .tar.gz of `count` directory headers (tarfile keeps a TarInfo for every one)."""
    block = tar_header("d/", tarfile.DIRTYPE, 0)
    full, rest = divmod(count, 8192)
    return gzip_repeated(b"", block * 8192, full, block * rest + bytes(1024))


def zip_of_raw(members: list[tuple[str, int, bytes, int, int]]) -> bytes:
    """A zip of (name, method, raw member data, uncompressed size, crc) members, written as given."""
    local, central = bytearray(), bytearray()
    for name, method, raw, size, crc in members:
        encoded = name.encode()
        central += (
            struct.pack(
                "<4sHHHHHHIIIHHHHHII",
                b"PK\x01\x02",
                20,
                20,
                0,
                method,
                0,
                0,
                crc,
                len(raw),
                size,
                len(encoded),
                0,
                0,
                0,
                0,
                0,
                len(local),
            )
            + encoded
        )
        local += (
            struct.pack(
                "<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, method, 0, 0, crc, len(raw), size, len(encoded), 0
            )
            + encoded
            + raw
        )
    end = struct.pack(
        "<4sHHHHIIH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central), len(local), 0
    )
    return bytes(local + central + end)


def lying_zip(entries: int, declared: int = 1) -> bytes:
    """A zip whose end record declares `declared` entries in front of a central directory of `entries`
    (all naming one empty local member, `a.png`)."""
    name = b"a.png"
    local = struct.pack("<4sHHHHHIIIHH", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0) + name
    entry = (
        struct.pack(
            "<4sHHHHHHIIIHHHHHII", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0, len(name), 0, 0, 0, 0, 0, 0
        )
        + name
    )
    central = entry * entries
    end = struct.pack("<4sHHHHIIH", b"PK\x05\x06", 0, 0, declared, declared, len(central), len(local), 0)
    return local + central + end


def corrupt_deflate_member() -> tuple[str, int, bytes, int, int]:
    """A member whose deflate data is invalid from its first block (zlib.error: invalid block type)."""
    return ("bad-deflate.png", 8, b"\xff" * 64, 4096, 0)


def corrupt_lzma_member() -> tuple[str, int, bytes, int, int]:
    """A zip LZMA member (method 14) whose LZMA1 data is garbage after a valid properties header."""
    return ("bad-lzma.png", 14, b"\x09\x14\x05\x00\x5d\x00\x00\x10\x00" + b"\xff" * 64, 4096, 0)


def stored_member(name: str, data: bytes) -> tuple[str, int, bytes, int, int]:
    return (name, 0, data, len(data), zlib.crc32(data))


def _meta_and_dataset(transfer_syntax: str, rows: int, cols: int, frames: int | None = None):  # type: ignore[no-untyped-def]
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "OT"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns = rows, cols
    if frames is not None:
        ds.NumberOfFrames = frames
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    return meta, ds


def deflated_dicom(pixel_bytes: int) -> bytes:
    """A DICOM file in the Deflated Explicit VR Little Endian transfer syntax whose data set inflates to
    `pixel_bytes` of pixel data (zeros): pydicom inflates all of it before reading one element."""
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset, write_file_meta_info
    from pydicom.uid import DeflatedExplicitVRLittleEndian

    side = 16
    meta, ds = _meta_and_dataset(DeflatedExplicitVRLittleEndian, side, side)
    head = DicomBytesIO()
    head.write(bytes(128) + b"DICM")
    write_file_meta_info(head, meta, enforce_standard=True)
    body = DicomBytesIO()
    body.is_little_endian, body.is_implicit_VR = True, False
    write_dataset(body, ds)
    pixel_header = struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, pixel_bytes)
    return head.getvalue() + raw_deflate_of_zeros(body.getvalue() + pixel_header, pixel_bytes)


def _rle_zero_frame(pixels: int) -> bytes:
    """One RLE Lossless frame of `pixels` zero bytes (one segment of 128-byte replicate runs)."""
    runs, rest = divmod(pixels, 128)
    segment = b"\x81\x00" * runs + (bytes([257 - rest, 0]) if rest else b"")
    segment += b"\x00" * (len(segment) % 2)
    return struct.pack("<16I", 1, 64, *([0] * 14)) + segment


def rle_multiframe_dicom(rows: int, cols: int, frames: int, preamble: bool = True) -> bytes:
    """An 8-bit RLE Lossless DICOM of `frames` black frames (each frame ~rows*cols/64 bytes); without
    the preamble it is only read because its name ends in .dcm (pydicom's force read)."""
    from pydicom.encaps import encapsulate
    from pydicom.uid import RLELossless

    _meta, ds = _meta_and_dataset(RLELossless, rows, cols, frames)
    ds.PixelData = encapsulate([_rle_zero_frame(rows * cols)] * frames)
    ds["PixelData"].VR = "OB"
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    data = buf.getvalue()
    return data if preamble else data[132:]


# --- NIfTI (models/nifti.py): the 348-byte header is an allocation request ---------------------------


def nifti_header(
    dims: tuple[int, ...], datatype: int = 4, bitpix: int = 16, vox_offset: float = 352.0
) -> bytes:
    """A little-endian single-file NIfTI-1 header (348 bytes + the 4-byte extension flag), written field
    by field: dim, datatype, bitpix and vox_offset as given, whatever they imply."""
    head = bytearray(352)
    struct.pack_into("<i", head, 0, 348)
    struct.pack_into("<8h", head, 40, len(dims), *dims, *([1] * (7 - len(dims))))
    struct.pack_into("<hh", head, 70, datatype, bitpix)
    struct.pack_into("<8f", head, 76, 0.0, *([1.0] * 7))  # pixdim (qfac 0 is read as 1)
    struct.pack_into("<fff", head, 108, vox_offset, 1.0, 0.0)  # vox_offset, scl_slope, scl_inter
    struct.pack_into("<hh", head, 252, 0, 1)  # qform_code 0, sform_code 1
    for row, at in enumerate((280, 296, 312)):  # srow_x, srow_y, srow_z: the identity
        struct.pack_into("<4f", head, at, *[1.0 if c == row else 0.0 for c in range(4)])
    head[344:348] = b"n+1\0"
    return bytes(head)


def lying_nifti(gz: bool = True) -> bytes:
    """A header declaring 30000 x 30000 x 30000 int16 voxels (54 TB) in front of 64 bytes."""
    data = nifti_header((30000, 30000, 30000)) + bytes(64)
    return gzip.compress(data, mtime=0) if gz else data


def huge_datatype_nifti(datatype: int = 2048, bitpix: int = 256) -> bytes:
    """A 64^3 header of complex256 voxels (32 bytes each; or any other refused / unknown code)."""
    return nifti_header((64, 64, 64), datatype, bitpix) + bytes(64)


def truncated_nifti() -> bytes:
    """A 64 x 64 x 64 int16 header (512 KiB of voxels) in front of 100 KiB: the rest is missing."""
    return nifti_header((64, 64, 64)) + bytes(100 * 1024)


def four_d_nifti() -> bytes:
    """A 4D header (16^3 x 50 frames) with all its voxel bytes."""
    return gzip.compress(nifti_header((16, 16, 16, 50)) + bytes(16**3 * 50 * 2), mtime=0)


def gzip_bomb_nifti(inflated: int = 1024 * MIB) -> bytes:
    """A .nii.gz of a 64^3 int16 header followed by `inflated` bytes of zeros (about 1 MB on the wire for
    1 GiB): the reader must inflate only the 512 KiB the header names."""
    head = nifti_header((64, 64, 64))
    full, rest = divmod(inflated, 16 * MIB)
    return gzip_repeated(head, bytes(16 * MIB), full, bytes(rest))
