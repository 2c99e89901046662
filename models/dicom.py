"""DICOM within limits, one code path for every DICOM file (with or without the `DICM` preamble).

The file-meta group is read first: a data set stored with the Deflated Explicit VR Little Endian
transfer syntax is refused there, since pydicom would inflate all of it into memory before reading a
single element (a few hundred KB can inflate to gigabytes). The header's image size (rows x columns x
frames, and x samples x bytes per sample) is checked before any pixel is decoded.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pydicom itself is imported where it is used
    from pydicom.dataset import Dataset

DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"
BYTES_PER_PIXEL_LIMIT = 4
"""Decoded pixel data may take at most this many bytes per allowed pixel (4 x MAX_IMAGE_PIXELS in all)."""


class DicomRejected(Exception):
    """A DICOM file that is not decoded, with a reason fit to report back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def has_preamble(data: bytes) -> bool:
    return data[128:132] == b"DICM"


def transfer_syntax(data: bytes) -> str | None:
    """The transfer syntax UID of the file-meta group (read the way pydicom reads it), or None."""
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import _read_file_meta_info, read_preamble

    fp = io.BytesIO(data)
    try:
        read_preamble(fp, not has_preamble(data))
        meta = _read_file_meta_info(fp)
        uid = meta.get("TransferSyntaxUID")
    except InvalidDicomError:
        raise DicomRejected("not a valid DICOM file") from None
    except Exception as exc:  # noqa: BLE001 - a broken header is a rejection
        raise DicomRejected(f"cannot parse DICOM file ({type(exc).__name__})") from None
    return None if uid is None else str(uid).strip("\0 ")


def _count(ds: Any, keyword: str, default: int) -> int:
    """A non-negative integer header value (first of several), default when absent or empty."""
    value = ds.get(keyword, None)
    if value is None or value == "":
        return default
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if len(value) == 0:
            return default
        value = value[0]
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise DicomRejected(f"invalid {keyword} in DICOM header") from None
    if number < 0:
        raise DicomRejected(f"invalid {keyword} in DICOM header")
    return number


def check_image_size(ds: Any, max_pixels: int) -> None:
    """Refuse an image whose header declares more than max_pixels pixels (rows x columns x frames) or
    more than BYTES_PER_PIXEL_LIMIT x max_pixels bytes of decoded pixel data."""
    rows, cols = _count(ds, "Rows", 0), _count(ds, "Columns", 0)
    frames = max(_count(ds, "NumberOfFrames", 1), 1)
    samples = max(_count(ds, "SamplesPerPixel", 1), 1)
    sample_bytes = max(-(-_count(ds, "BitsAllocated", 8) // 8), 1)
    pixels = rows * cols * frames
    if pixels > max_pixels:
        raise DicomRejected(f"image too large ({cols}x{rows} pixels x {frames} frame(s); limit {max_pixels})")
    decoded = pixels * samples * sample_bytes
    if decoded > BYTES_PER_PIXEL_LIMIT * max_pixels:
        raise DicomRejected(
            f"image too large ({decoded} bytes of pixel data; limit {BYTES_PER_PIXEL_LIMIT * max_pixels})"
        )


def read_dicom(data: bytes, max_pixels: int) -> Dataset:
    """The parsed data set of a DICOM file whose pixels may be decoded (raises DicomRejected)."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    if transfer_syntax(data) == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        raise DicomRejected(
            "deflated DICOM (transfer syntax 1.2.840.10008.1.2.1.99) is not accepted: "
            "it can only be read by inflating all of it; store it uncompressed or with a pixel codec"
        )
    try:
        ds = pydicom.dcmread(io.BytesIO(data), force=not has_preamble(data))
    except InvalidDicomError:
        raise DicomRejected("not a valid DICOM file") from None
    except Exception as exc:  # noqa: BLE001
        raise DicomRejected(f"cannot parse DICOM file ({type(exc).__name__})") from None
    if "PixelData" not in ds:
        raise DicomRejected("DICOM file without pixel data")
    check_image_size(ds, max_pixels)
    return ds
