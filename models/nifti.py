"""NIfTI volumes (.nii, .nii.gz) within limits: one 3D volume -> 2D uint8 slices (design record 16).

The header is an allocation request, so it is read and checked on its own first (nibabel's header-only
API on the first 348 / 540 bytes): dimensions (3D, or 4D with one frame; each > 0), datatype (real,
scalar: no complex, RGB or unknown codes), vox_offset, and the implied voxel count and byte count against
the pixel budget (voxels <= max_pixels, bytes <= BYTES_PER_PIXEL_LIMIT x max_pixels, as for DICOM). Only
then is voxel data read: of a .nii, the bytes the header names (a file that holds fewer is refused); of a
.nii.gz, at most the bytes the header names are inflated (a gzip bomb stops there). Then:

- orientation: the closest canonical (RAS+) orientation, as `nibabel.as_closest_canonical` finds it
  (flips and axis swaps of the stored array, no resampling);
- intensities to 8 bits: CT (scaled minimum below CT_MIN_BELOW, i.e. Hounsfield units with air) through
  the window CT_WINDOW (level, width); anything else linearly between its PERCENTILES (of at most
  SAMPLE_VOXELS voxels, evenly strided);
- slices along an axis (axial z, coronal y, sagittal x, or all three), each turned so that superior /
  anterior is up; a slice with fewer than KEEP_FRACTION of its pixels more than BACKGROUND_MARGIN grey
  levels above the volume's 8-bit background (its minimum) is dropped.
"""

from __future__ import annotations

import gzip
import io
import threading
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from synthaudit.models.config import NIFTI_AXES

AXIS_LETTER = {"sagittal": "x", "coronal": "y", "axial": "z"}
BYTES_PER_PIXEL_LIMIT = 4
"""Voxel data may take at most this many bytes per allowed pixel (4 x MAX_IMAGE_PIXELS, as DICOM)."""
MAX_VOX_OFFSET = 1 << 20
"""Header extensions (between the header and vox_offset) may take at most 1 MiB."""
CT_MIN_BELOW = -500.0
"""A volume whose scaled minimum is below this is taken as CT in Hounsfield units."""
CT_WINDOW = (40.0, 400.0)
"""The CT window (level, width) in HU: soft tissue, -160 .. 240 HU -> 0 .. 255."""
PERCENTILES = (0.5, 99.5)
"""Any other volume: these percentiles of its voxels -> 0 .. 255."""
SAMPLE_VOXELS = 1 << 20
"""The percentiles are taken over at most this many voxels (every n-th of the stored array)."""
KEEP_FRACTION = 0.05
BACKGROUND_MARGIN = 10
"""A slice is kept when at least KEEP_FRACTION of its pixels exceed the volume's 8-bit minimum by more
than BACKGROUND_MARGIN grey levels."""

# NIfTI datatype codes read as real scalars (nibabel's codes); everything else is refused.
_DTYPES = {
    2: np.uint8,
    4: np.int16,
    8: np.int32,
    16: np.float32,
    64: np.float64,
    256: np.int8,
    512: np.uint16,
    768: np.uint32,
    1024: np.int64,
    1280: np.uint64,
}
_REFUSED_DTYPES = {
    1: "1-bit binary",
    32: "complex64",
    128: "RGB",
    1536: "float128",
    1792: "complex128",
    2048: "complex256",
    2304: "RGBA",
}
_VOLUME_LOCK = threading.BoundedSemaphore(1)  # one volume decoded at a time: its memory is bounded once


class NiftiRejected(Exception):
    """A NIfTI file that is not read, with a one-line reason fit to report back."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VolumeHeader:
    """What the checked header promises: shape (x, y, z), dtype, offset, scaling and the affine."""

    shape: tuple[int, int, int]
    dtype: np.dtype
    vox_offset: int
    slope: float
    inter: float
    affine: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape)) * self.dtype.itemsize


def is_nifti_name(name: str) -> bool:
    """NIfTI is recognised by its suffix (.nii, .nii.gz); its content is then checked."""
    return name.lower().endswith((".nii", ".nii.gz"))


def strip_nifti_suffix(name: str) -> str:
    lower = name.lower()
    for suffix in (".nii.gz", ".nii"):
        if lower.endswith(suffix):
            return name[: -len(suffix)]
    return name


def _parse_header(head: bytes) -> Any:  # a nibabel Nifti1Header / Nifti2Header
    """A nibabel Nifti1Header or Nifti2Header from the first bytes (raises NiftiRejected)."""
    from nibabel.nifti1 import Nifti1Header
    from nibabel.nifti2 import Nifti2Header

    if len(head) < 348:
        raise NiftiRejected("not a NIfTI file (shorter than its 348-byte header)")
    sizes = (int.from_bytes(head[:4], "little"), int.from_bytes(head[:4], "big"))
    cls = Nifti1Header if 348 in sizes else Nifti2Header if 540 in sizes else None
    if cls is None:
        raise NiftiRejected("not a NIfTI file (sizeof_hdr is neither 348 nor 540)")
    if cls is Nifti2Header and len(head) < 540:
        raise NiftiRejected("not a NIfTI file (shorter than its 540-byte header)")
    try:
        header = cls.from_fileobj(io.BytesIO(head[: 348 if cls is Nifti1Header else 540]), check=False)
    except Exception as exc:  # noqa: BLE001 - any header nibabel cannot parse is a rejection
        raise NiftiRejected(f"cannot parse NIfTI header ({type(exc).__name__})") from None
    magic = bytes(header["magic"]).rstrip(b"\0")
    if magic in (b"ni1", b"ni2"):
        raise NiftiRejected("a NIfTI header/image pair (.hdr/.img) is not accepted; store a single .nii")
    if magic not in (b"n+1", b"n+2"):
        raise NiftiRejected("not a NIfTI file (bad magic)")
    return header


def check_header(head: bytes, max_pixels: int) -> VolumeHeader:
    """The checked header of a NIfTI file from its first bytes; nothing else is read (NiftiRejected)."""
    header = _parse_header(head)
    dims = [int(d) for d in header["dim"]]
    ndim = dims[0]
    if not 1 <= ndim <= 7:
        raise NiftiRejected(f"invalid NIfTI dimensions (dim[0] = {ndim})")
    shape = dims[1 : ndim + 1]
    if any(d <= 0 for d in shape):
        raise NiftiRejected(f"invalid NIfTI dimensions ({' x '.join(map(str, shape))})")
    if ndim > 3 and any(d > 1 for d in shape[3:]):
        frames = int(np.prod(shape[3:], dtype=object))
        raise NiftiRejected(
            f"4D NIfTI ({' x '.join(map(str, shape))}: {frames} frames) is not accepted; "
            "store each frame as a 3D volume"
        )
    x, y, z = (shape + [1, 1])[:3]
    code = int(header["datatype"])
    if code in _REFUSED_DTYPES:
        raise NiftiRejected(f"NIfTI datatype {_REFUSED_DTYPES[code]} is not accepted (real scalars only)")
    if code not in _DTYPES:
        raise NiftiRejected(f"unknown NIfTI datatype code {code}")
    dtype = np.dtype(_DTYPES[code]).newbyteorder(header.endianness)
    voxels = x * y * z  # Python ints: no overflow
    if voxels > max_pixels:
        raise NiftiRejected(f"volume too large ({x}x{y}x{z} voxels; limit {max_pixels})")
    if voxels * dtype.itemsize > BYTES_PER_PIXEL_LIMIT * max_pixels:
        raise NiftiRejected(
            f"volume too large ({voxels * dtype.itemsize} bytes of voxel data; "
            f"limit {BYTES_PER_PIXEL_LIMIT * max_pixels})"
        )
    offset = float(header["vox_offset"])
    size = int(header["sizeof_hdr"])
    if not np.isfinite(offset) or offset < size or offset > MAX_VOX_OFFSET or offset != int(offset):
        raise NiftiRejected(f"invalid NIfTI vox_offset {offset:g} (from {size} to {MAX_VOX_OFFSET} bytes)")
    slope, inter = _slope_inter(header)
    try:
        affine = np.asarray(header.get_best_affine(), dtype=np.float64)
    except Exception:  # noqa: BLE001 - an invalid quaternion or sform
        raise NiftiRejected("invalid NIfTI orientation (qform / sform)") from None
    if not np.isfinite(affine).all():
        raise NiftiRejected("invalid NIfTI orientation (non-finite affine)")
    return VolumeHeader((x, y, z), dtype, int(offset), float(slope), float(inter), affine)


def _slope_inter(header: Any) -> tuple[float, float]:
    """scl_slope / scl_inter as nibabel reads them; (1, 0) when unset (slope 0 or NaN)."""
    try:
        slope, inter = header.get_slope_inter()
    except Exception:  # noqa: BLE001 - an infinite slope or intercept
        raise NiftiRejected("invalid NIfTI intensity scaling (scl_slope / scl_inter)") from None
    if slope is None:
        return 1.0, 0.0
    return float(slope), 0.0 if inter is None else float(inter)


def _voxel_bytes(data: bytes, gzipped: bool, max_pixels: int) -> tuple[VolumeHeader, memoryview]:
    """The checked header and exactly its voxel bytes, in one buffer (a view of a .nii's bytes); a .nii.gz
    is inflated in bounded steps straight into a buffer of the size the header names, and no further."""
    if not gzipped:
        hdr = check_header(data[:540], max_pixels)
        end = hdr.vox_offset + hdr.nbytes
        if len(data) < end:
            raise NiftiRejected(
                f"truncated NIfTI file (the header needs {end} bytes, the file holds {len(data)})"
            )
        return hdr, memoryview(data)[hdr.vox_offset : end]
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
            head = stream.read(540)
            hdr = check_header(head, max_pixels)
            view = memoryview(bytearray(hdr.nbytes))
            first = head[hdr.vox_offset : hdr.vox_offset + hdr.nbytes]
            view[: len(first)] = first
            filled, skip = len(first), hdr.vox_offset - len(head)
            while skip > 0 and (chunk := stream.read(min(skip, 1 << 16))):  # extensions (<= 1 MiB)
                skip -= len(chunk)
            while skip <= 0 and filled < hdr.nbytes and (n := stream.readinto(view[filled:])):
                filled += n
    except NiftiRejected:
        raise
    except (OSError, EOFError, zlib.error):
        raise NiftiRejected("corrupt or truncated gzip data in a .nii.gz file") from None
    if filled < hdr.nbytes:
        raise NiftiRejected(
            f"truncated NIfTI file (the header needs {hdr.vox_offset + hdr.nbytes} bytes, "
            f"the data holds {hdr.vox_offset - max(skip, 0) + filled})"
        )
    return hdr, view


def _canonical(volume: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """The array in the closest canonical (RAS+) orientation (nibabel.as_closest_canonical's flips and
    transposes: views, no copy)."""
    from nibabel.orientations import apply_orientation, axcodes2ornt, io_orientation, ornt_transform

    try:
        ornt = io_orientation(affine)
    except (ValueError, np.linalg.LinAlgError):
        return volume
    if np.isnan(ornt).any():  # a degenerate affine (a zero column): the stored orientation
        return volume
    return np.asarray(apply_orientation(volume, ornt_transform(ornt, axcodes2ornt("RAS"))))


def _intensity_map(flat: np.ndarray, slope: float, inter: float) -> tuple[float, float]:
    """(lo, hi) of the stored values mapped to 0 and 255: the CT window or the volume's percentiles."""
    step = max(1, flat.size // SAMPLE_VOXELS)
    sample = flat[::step].astype(np.float64)
    if flat.dtype.kind == "f":
        sample = sample[np.isfinite(sample)]
        with np.errstate(invalid="ignore"):
            ends = np.array([np.nanmin(flat), np.nanmax(flat)], dtype=np.float64)
        if not np.isfinite(ends).all():  # all NaN, or infinities: the sample's finite range
            ends = np.array([sample.min(), sample.max()]) if sample.size else np.zeros(2)
    else:
        ends = np.array([flat.min(), flat.max()], dtype=np.float64)
    if sample.size == 0:
        return 0.0, 0.0
    ends = np.sort(ends * slope + inter)
    if float(ends[0]) < CT_MIN_BELOW:
        level, width = CT_WINDOW
        lo, hi = level - width / 2.0, level + width / 2.0
    else:
        lo, hi = (float(v) for v in np.percentile(sample * slope + inter, PERCENTILES))
        if hi <= lo:
            lo, hi = float(ends[0]), float(ends[1])
    # back to stored values: value = stored * slope + inter
    a, b = (lo - inter) / slope, (hi - inter) / slope
    return (a, b) if a <= b else (b, a)


def _to_uint8(volume: np.ndarray, lo: float, hi: float, invert: bool) -> np.ndarray:
    """The volume (stored values) in 8 bits, plane by plane (float32 temporaries of one plane)."""
    out = np.zeros(volume.shape, dtype=np.uint8)
    if hi <= lo:
        return out
    scale = np.float32(255.0 / (hi - lo))
    for k in range(volume.shape[2]):
        plane = volume[:, :, k].astype(np.float32)
        plane = np.nan_to_num(plane, nan=lo, posinf=hi, neginf=lo)
        mapped = np.clip(np.rint((plane - np.float32(lo)) * scale), 0, 255)
        out[:, :, k] = 255 - mapped if invert else mapped
    return out


def _slices(vol: np.ndarray, axis: str) -> list[tuple[str, np.ndarray]]:
    """(id suffix, 2D slice) along one axis of a RAS volume, superior / anterior up."""
    letter = AXIS_LETTER[axis]
    n = vol.shape["xyz".index(letter)]
    width = max(3, len(str(n - 1)))
    out = []
    for k in range(n):
        plane = vol[k] if letter == "x" else vol[:, k] if letter == "y" else vol[:, :, k]
        out.append((f"_{letter}{k:0{width}d}", np.ascontiguousarray(np.rot90(plane))))
    return out


def _kept(slices: list[tuple[str, np.ndarray]], background: int) -> list[tuple[str, np.ndarray]]:
    return [
        (sid, s)
        for sid, s in slices
        if np.count_nonzero(s > background + BACKGROUND_MARGIN) >= KEEP_FRACTION * s.size
    ]


def read_volume(data: bytes, name: str, max_pixels: int, axis: str = "axial") -> list[tuple[str, np.ndarray]]:
    """The kept slices of a .nii / .nii.gz file as (id suffix, uint8 [H, W]), in order (NiftiRejected)."""
    if axis not in NIFTI_AXES:
        raise ValueError(f"nifti axis must be one of {', '.join(NIFTI_AXES)}, not {axis!r}")
    gzipped = data[:2] == b"\x1f\x8b"
    if name.lower().endswith(".gz") and not gzipped:
        raise NiftiRejected("not a gzip file (a .nii.gz must be gzip-compressed)")
    with _VOLUME_LOCK:
        hdr, raw = _voxel_bytes(data, gzipped, max_pixels)
        flat = np.frombuffer(raw, dtype=hdr.dtype)
        lo, hi = _intensity_map(flat, hdr.slope, hdr.inter)
        stored = flat.reshape(hdr.shape, order="F")
        vol8 = _to_uint8(stored, lo, hi, invert=hdr.slope < 0)
        del raw, flat, stored  # the stored bytes go before the slices are cut
        vol = _canonical(vol8, hdr.affine)
        axes = ("sagittal", "coronal", "axial") if axis == "all" else (axis,)
        background = int(vol8.min()) if vol8.size else 0
        kept = [s for a in axes for s in _kept(_slices(vol, a), background)]
    if not kept:
        raise NiftiRejected(
            f"no slice of the volume has {KEEP_FRACTION:.0%} of its pixels above the background"
        )
    return kept
