"""Image loading: folders, single files and archives -> uint8 grayscale squares.

Sources are read without ever extracting anything to disk. Archives are read by `models.archives`,
the same reader with the same limits as the API's uploads (one budget of members and unpacked bytes
per source). Image type is decided by content (DICOM magic / Pillow signatures), the suffix only
decides whether a file that fails to decode is reported (image suffix) or silently ignored (anything
else, e.g. ``labels.csv``). DICOM files go through `models.dicom` (deflated data sets refused, the
image size checked before decoding). NIfTI volumes (.nii, .nii.gz: by suffix) go through `models.nifti`
(the header checked before any voxel is read) and give one image per kept slice, id ``<volume>_z042``.
"""

from __future__ import annotations

import io
import os
import stat
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, UnidentifiedImageError

from synthaudit.models.archives import (
    ARCHIVE_SUFFIXES,
    DEFAULT_LIMITS,
    ArchiveError,
    ArchiveLimits,
    Budget,
    Member,
    MemberError,
    Skipped,
    is_archive_name,
    read_archive,
)
from synthaudit.models.dicom import DicomRejected, has_preamble, read_dicom
from synthaudit.models.nifti import NiftiRejected, is_nifti_name, read_volume, strip_nifti_suffix

if TYPE_CHECKING:  # pydicom itself is imported where it is used
    from pydicom.dataset import Dataset

MAX_IMAGE_PIXELS = 64_000_000
"""Decompression-bomb guard: images with more pixels than this (x frames) are rejected (MAX_IMAGE_PIXELS)."""
MAX_FILE_BYTES = DEFAULT_LIMITS.max_member_bytes
"""Files / archive members larger than this are rejected unread (MAX_IMAGE_BYTES)."""

Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS

PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp")
DICOM_SUFFIXES = (".dcm", ".dicom")
NIFTI_SUFFIXES = (".nii", ".nii.gz")  # .nii.gz: see is_image_name (a path's suffix is only .gz)
IMAGE_SUFFIXES: frozenset[str] = frozenset(PILLOW_SUFFIXES + DICOM_SUFFIXES + (".nii",))
PILLOW_FORMATS = ("PNG", "JPEG", "TIFF", "BMP")

_SNIFF_BYTES = 132
_BMP_HEADER_SIZES = {12, 40, 52, 56, 64, 108, 124}
_MAX_WORKERS = 8
_MAX_PENDING_BYTES = 512 * 2**20  # archive members read ahead of the decoders, at most

ProgressFn = Callable[[float], None]


class ImageSetError(ValueError):
    """Base class for every error raised while building an image set."""


class ImageReadError(ImageSetError):
    """One file (or one archive) could not be decoded."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


class EmptySetError(ImageSetError):
    """No readable image was found in a source."""


class DuplicateIdError(ImageSetError):
    """Two or more files map to the same image id."""

    def __init__(self, ids: list[str]) -> None:
        shown = ", ".join(ids[:10])
        more = f" (and {len(ids) - 10} more)" if len(ids) > 10 else ""
        super().__init__(f"duplicate image ids: {shown}{more}")
        self.ids = ids


@dataclass(frozen=True)
class Rejected:
    """A file that looked like an image but could not be used, with a short reason."""

    name: str
    reason: str


@dataclass(frozen=True)
class Ignored:
    """A file that is not an image at all (by name and first bytes): left out, and said so."""

    name: str


@dataclass
class ImageSet:
    """Decoded images: ``images[i]`` (uint8 [S, S]) belongs to ``ids[i]``; ids are sorted. ``ignored``:
    the files that are not images at all (named to the user, not counted as rejected)."""

    ids: list[str]
    images: np.ndarray
    rejected: list[Rejected] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    resized: str | None = (
        None  # how images of other sizes or shapes were brought to size x size (None: all were)
    )
    source_side: int = 0  # the median shorter side of the images before resizing (0: not known)

    def __len__(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class _Entry:
    """A candidate image: its display name (relative, '/'-separated) and a way to get its bytes."""

    name: str
    read: Callable[[], bytes]
    nbytes: int = 0  # bytes already held in memory (archive members), for the read-ahead bound


# --------------------------------------------------------------------------- content sniffing


def _suffix(name: str) -> str:
    return PurePosixPath(name).suffix.lower()


def _is_dicom_magic(data: bytes) -> bool:
    return has_preamble(data)


def _is_pillow_magic(head: bytes) -> bool:
    if head.startswith(
        (b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
    ):
        return True
    if head.startswith(b"BM") and len(head) >= 18:
        return int.from_bytes(head[14:18], "little") in _BMP_HEADER_SIZES
    return False


def _looks_like_image(head: bytes) -> bool:
    """True when the first bytes carry a DICOM or supported Pillow signature."""
    return _is_dicom_magic(head) or _is_pillow_magic(head)


def _is_ignored(name: str) -> bool:
    """Hidden files/folders and macOS resource forks are never images."""
    return any(p.startswith(".") or p == "__MACOSX" for p in PurePosixPath(name).parts)


def _is_archive_name(name: str) -> bool:
    return is_archive_name(name)


def is_image_name(name: str) -> bool:
    """Whether a file name carries an image suffix (.nii.gz included)."""
    return _suffix(name) in IMAGE_SUFFIXES or is_nifti_name(name)


def _wants(name: str, head: Callable[[], bytes]) -> bool:
    """Whether a file should be decoded: image suffix, or image content without one."""
    if _is_ignored(name):
        return False
    if is_image_name(name):
        return True
    if _is_archive_name(name):
        return False
    return _looks_like_image(head())


# --------------------------------------------------------------------------- decoding


def _minmax_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale an array to 0..255 by its finite min and max (constant images become 0)."""
    a = np.asarray(arr, dtype=np.float64)
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, dtype=np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    if hi <= lo:
        return np.zeros(a.shape, dtype=np.uint8)
    out = (np.where(finite, a, lo) - lo) * (255.0 / (hi - lo))
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def _luma(rgb: np.ndarray) -> np.ndarray:
    """ITU-R 601 luma of an [H, W, 3+] array, as float64."""
    a = rgb.astype(np.float64)
    return a[..., 0] * 0.299 + a[..., 1] * 0.587 + a[..., 2] * 0.114


def _pil_to_gray(im: Image.Image) -> np.ndarray:
    """Any Pillow mode -> uint8 [H, W]; high bit-depth modes are min-max scaled."""
    if im.mode == "L":
        return np.asarray(im, dtype=np.uint8)
    if im.mode.startswith("I") or im.mode == "F":
        return _minmax_uint8(np.asarray(im))
    try:
        gray = im.convert("L")
    except ValueError:
        gray = im.convert("RGB").convert("L")
    return np.asarray(gray, dtype=np.uint8)


def _decode_pillow(data: bytes, name: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode PNG/JPEG/TIFF/BMP bytes to uint8 [H, W]."""
    try:
        with Image.open(io.BytesIO(data), formats=PILLOW_FORMATS) as im:
            width, height = im.size
            if width * height > max_pixels:
                raise ImageReadError(name, f"image too large ({width}x{height} pixels; limit {max_pixels})")
            im.load()
            return _pil_to_gray(im)
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(name, "image too large (decompression bomb guard)") from None
    except UnidentifiedImageError:
        raise ImageReadError(name, "not a supported image (PNG, JPEG, TIFF, BMP, DICOM or NIfTI)") from None
    except (OSError, SyntaxError, EOFError):
        raise ImageReadError(name, "corrupt or truncated image data") from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a rejection, not a crash
        raise ImageReadError(name, f"cannot decode image ({type(exc).__name__})") from None


def _first_float(value: object) -> float | None:
    """First value of a (possibly multi-valued) DICOM numeric element, or None."""
    if value is None:
        return None
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if len(value) == 0:
            return None
        value = value[0]
    try:
        out = float(value)  # type: ignore[arg-type]  # any element value: float() raises what is caught below
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None


def _window_uint8(arr: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM linear VOI window (PS3.3 C.11.2.1.2) to 0..255."""
    lo = center - 0.5 - (width - 1.0) / 2.0
    hi = center - 0.5 + (width - 1.0) / 2.0
    out = np.clip((arr - lo) / (hi - lo), 0.0, 1.0) * 255.0
    return np.rint(out).astype(np.uint8)


def _dicom_gray_to_uint8(arr: np.ndarray, ds: Dataset) -> np.ndarray:
    """Modality rescale, then VOI window (or min-max), then MONOCHROME1 inversion."""
    slope = _first_float(getattr(ds, "RescaleSlope", None))
    intercept = _first_float(getattr(ds, "RescaleIntercept", None))
    values = arr.astype(np.float64) * (1.0 if slope is None or slope == 0 else slope)
    values += 0.0 if intercept is None else intercept
    center = _first_float(getattr(ds, "WindowCenter", None))
    width = _first_float(getattr(ds, "WindowWidth", None))
    if center is not None and width is not None and width > 1.0:
        out = _window_uint8(values, center, width)
    else:
        out = _minmax_uint8(values)
    if str(getattr(ds, "PhotometricInterpretation", "")).strip().upper() == "MONOCHROME1":
        out = 255 - out
    return out


def _dicom_array_to_gray(arr: np.ndarray, ds: Dataset, name: str) -> np.ndarray:
    """Pick the middle frame and map grayscale / colour pixel arrays to uint8 [H, W]."""
    frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
    samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
    if frames > 1 and arr.ndim == (4 if samples > 1 else 3):
        arr = arr[frames // 2]
    photometric = str(getattr(ds, "PhotometricInterpretation", "")).strip().upper()
    if photometric == "PALETTE COLOR":
        from pydicom.pixels import apply_color_lut

        try:
            arr = apply_color_lut(arr, ds)
        except Exception as exc:  # noqa: BLE001
            raise ImageReadError(name, f"cannot apply DICOM palette ({type(exc).__name__})") from None
        return _minmax_uint8(_luma(arr))
    if arr.ndim == 3 and samples > 1:
        gray = _luma(arr)
        return (
            np.clip(np.rint(gray), 0, 255).astype(np.uint8) if arr.dtype == np.uint8 else _minmax_uint8(gray)
        )
    if arr.ndim != 2:
        raise ImageReadError(name, f"unexpected DICOM pixel array with {arr.ndim} dimensions")
    return _dicom_gray_to_uint8(arr, ds)


def _decode_dicom(data: bytes, name: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode DICOM bytes to uint8 [H, W]; multi-frame series give their middle frame."""
    try:
        ds = read_dicom(data, max_pixels)
    except DicomRejected as exc:
        raise ImageReadError(name, exc.reason) from None
    except Exception as exc:  # noqa: BLE001 - a header that breaks the checks is a rejection
        raise ImageReadError(name, f"cannot parse DICOM file ({type(exc).__name__})") from None
    try:
        arr = ds.pixel_array
    except Exception as exc:  # noqa: BLE001 - missing codec, bad length, ...
        raise ImageReadError(name, f"cannot decode DICOM pixel data ({type(exc).__name__})") from None
    return _dicom_array_to_gray(arr, ds, name)


def _decode(data: bytes, name: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Content-based dispatch between DICOM (with the DICM magic, or any .dcm that is not a Pillow
    image: both read by `models.dicom` with the same checks) and Pillow."""
    if _is_dicom_magic(data):
        return _decode_dicom(data, name, max_pixels)
    if not _is_pillow_magic(data[:_SNIFF_BYTES]) and _suffix(name) in DICOM_SUFFIXES:
        return _decode_dicom(data, name, max_pixels)
    return _decode_pillow(data, name, max_pixels)


def decode_slices(
    data: bytes, name: str, max_pixels: int = MAX_IMAGE_PIXELS, nifti_axis: str = "axial"
) -> list[tuple[str, np.ndarray]]:
    """One file's images as (id suffix, uint8 [H, W]): a NIfTI volume's kept slices (suffix ``_z042``),
    else the one image (suffix ""); raises ImageReadError."""
    if not data:
        raise ImageReadError(name, "empty file")
    if not is_nifti_name(name):
        return [("", _decode(data, name, max_pixels))]
    try:
        return read_volume(data, name, max_pixels, nifti_axis)
    except NiftiRejected as exc:
        raise ImageReadError(name, exc.reason) from None
    except MemoryError:
        raise ImageReadError(name, "volume too large for the memory available") from None
    except Exception as exc:  # noqa: BLE001 - any reader failure is a rejection, not a crash
        raise ImageReadError(name, f"cannot read NIfTI volume ({type(exc).__name__})") from None


def decode_image(data: bytes, name: str, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode one image file's bytes to uint8 grayscale [H, W]; raises ImageReadError.

    max_pixels: width x height (x frames for DICOM, x slices for NIfTI), checked from the header before
    decoding. A NIfTI volume gives its middle kept axial slice (as a multi-frame DICOM its middle frame).
    """
    slices = decode_slices(data, name, max_pixels)
    return slices[len(slices) // 2][1]


def _fit(arr: np.ndarray, size: int) -> np.ndarray:
    """Resize to size x size with Pillow bilinear (antialiased when shrinking)."""
    if arr.shape == (size, size):
        return np.ascontiguousarray(arr, dtype=np.uint8)
    resized = Image.fromarray(np.ascontiguousarray(arr, dtype=np.uint8)).resize(
        (size, size), Image.Resampling.BILINEAR
    )
    return np.asarray(resized, dtype=np.uint8)


Decoded = list[tuple[str, np.ndarray, tuple[int, int]]]


def _decode_entry(entry: _Entry, size: int, nifti_axis: str = "axial") -> Decoded:
    """The file's images (one, or a volume's slices): id suffix, image at size x size, and its height
    and width as decoded."""
    data = entry.read()
    if not data:
        raise ImageReadError(entry.name, "empty file")
    slices = decode_slices(data, entry.name, MAX_IMAGE_PIXELS, nifti_axis)
    del data
    return [(suffix, _fit(arr, size), (int(arr.shape[0]), int(arr.shape[1]))) for suffix, arr in slices]


def resize_note(shapes: list[tuple[int, int]], size: int) -> str | None:
    """One sentence on how the set's images were brought to size x size, when any was not already."""
    if not shapes or all(s == (size, size) for s in shapes):
        return None
    distinct = sorted(set(shapes))
    non_square = sum(1 for h, w in shapes if h != w)
    sizes = ", ".join(f"{w}x{h}" for h, w in distinct[:3]) + (", ..." if len(distinct) > 3 else "")
    text = (
        f"{sum(1 for s in shapes if s != (size, size))} of {len(shapes)} images were resized to {size}x{size} "
        f"(bilinear; {len(distinct)} size(s): {sizes})"
    )
    if non_square:
        text += f"; {non_square} are not square and were stretched (their aspect ratio is not kept)"
    return text


# --------------------------------------------------------------------------- sources

Item = tuple[_Entry | Rejected | Ignored, float]


def _read_file(path: Path) -> Callable[[], bytes]:
    return path.read_bytes


def _file_head(path: Path) -> bytes:
    with open(path, "rb") as fh:
        return fh.read(_SNIFF_BYTES)


def _walk_folder(root: Path) -> list[str]:
    """Relative '/'-separated paths of all files under root, sorted, skipping hidden folders."""
    found: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        rel_dir = Path(dirpath).relative_to(root)
        found.extend((rel_dir / f).as_posix() for f in sorted(filenames))
    return found


def _folder_items(root: Path, max_bytes: int) -> Iterator[Item]:
    names = _walk_folder(root)
    for i, rel in enumerate(names):
        fraction = (i + 1) / len(names)
        path = root / rel
        try:
            st = path.stat()
        except OSError:
            continue
        if not stat.S_ISREG(st.st_mode):
            continue
        item = _checked_item(rel, st.st_size, partial(_file_head, path), _read_file(path), max_bytes)
        yield (Ignored(rel) if item is None else item), fraction


def _checked_item(
    name: str,
    nbytes: int,
    head: Callable[[], bytes],
    read: Callable[[], bytes],
    max_bytes: int = MAX_FILE_BYTES,
) -> _Entry | Rejected | None:
    """Entry for a wanted file, Rejected when too large, None when not an image at all."""
    try:
        wanted = _wants(name, head)
    except OSError:
        return Rejected(name, "unreadable file")
    if not wanted:
        return None
    if nbytes > max_bytes:
        return Rejected(name, f"file larger than {max_bytes} bytes")
    return _Entry(name, read)


def _archive_items(path: Path, budget: Budget) -> Iterator[Item]:
    """An archive's entries, read by `models.archives` (the API's reader, with the same limits).

    A corrupt archive or a spent budget is reported under the archive's name; what was read is kept.
    """
    try:
        for item in read_archive(path, budget):
            if isinstance(item, Skipped):
                yield Rejected(item.name, item.reason), item.fraction
                continue
            entry = _archive_entry(item)
            yield (Ignored(item.relpath) if entry is None else entry), item.fraction
    except ArchiveError as exc:
        yield Rejected(path.name, exc.reason), 1.0


def _archive_entry(member: Member) -> _Entry | Rejected | None:  # None: not an image
    """A wanted member's bytes (read now: a tar member cannot be read later), else None."""
    stream = member.open()
    try:
        head = stream.read(_SNIFF_BYTES)
        if not _wants(member.relpath, lambda: head):
            return None
        data = head + stream.read()
    except MemberError as exc:
        return Rejected(member.name, exc.reason)
    finally:
        stream.close()
    if not data:
        return Rejected(member.relpath, "empty file")  # as the decoder says, without a trip to it
    return _Entry(member.relpath, lambda: data, len(data))


def _single_file_items(path: Path, max_bytes: int) -> Iterator[Item]:
    item = _checked_item(
        path.name, path.stat().st_size, lambda: _file_head(path), _read_file(path), max_bytes
    )
    yield (Ignored(path.name) if item is None else item), 1.0


def _source_items(source: Path, limits: ArchiveLimits) -> Iterator[Item]:
    """Dispatch on the kind of source."""
    if source.is_dir():
        return _folder_items(source, limits.max_member_bytes)
    if not source.exists():
        raise FileNotFoundError(f"no such file or folder: {source}")
    if source.name.lower().endswith(ARCHIVE_SUFFIXES):
        return _archive_items(source, Budget(limits))
    return _single_file_items(source, limits.max_member_bytes)


# --------------------------------------------------------------------------- ids and assembly


def _strip_image_suffix(parts: tuple[str, ...]) -> str:
    """'/'-joined parts without the last part's extension when it is an image suffix."""
    last = PurePosixPath(parts[-1])
    if is_nifti_name(last.name):
        return "/".join((*parts[:-1], strip_nifti_suffix(last.name)))
    stem = last.stem if last.suffix.lower() in IMAGE_SUFFIXES else last.name
    return "/".join((*parts[:-1], stem))


def _common_dir_prefix(all_parts: list[tuple[str, ...]]) -> int:
    """Number of leading folders shared by every path (a single wrapping folder is not an id)."""
    if not all_parts:
        return 0
    dirs = [p[:-1] for p in all_parts]
    depth = min(len(d) for d in dirs)
    n = 0
    while n < depth and all(d[n] == dirs[0][n] for d in dirs):
        n += 1
    return n


def image_ids(names: list[str]) -> dict[str, str]:
    """Map display names to ids: relative path without image extension, common folders dropped."""
    parts = {name: PurePosixPath(name.replace("\\", "/")).parts for name in names}
    skip = _common_dir_prefix(list(parts.values()))
    return {name: _strip_image_suffix(p[skip:]) for name, p in parts.items()}


def _duplicates(ids: list[str]) -> list[str]:
    seen: set[str] = set()
    dups: set[str] = set()
    for i in ids:
        (dups if i in seen else seen).add(i)
    return sorted(dups)


class _Progress:
    """Throttled progress reporting (at most ~100 calls)."""

    def __init__(self, callback: ProgressFn | None) -> None:
        self.callback = callback
        self.last = -1.0

    def __call__(self, fraction: float, force: bool = False) -> None:
        if self.callback is None:
            return
        fraction = min(max(fraction, 0.0), 1.0)
        if force or fraction - self.last >= 0.01:
            self.last = fraction
            self.callback(fraction)


def _decode_all(
    items: Iterator[Item], size: int, progress: _Progress, nifti_axis: str = "axial"
) -> tuple[dict[str, Decoded], list[str], list[Rejected], list[str]]:
    """Decode entries on a small thread pool with a bounded number of files in flight: (each file's
    images by name, candidate names, rejected files, names of files that are not images)."""
    decoded: dict[str, Decoded] = {}
    candidates: list[str] = []
    rejected: list[Rejected] = []
    ignored: list[str] = []
    workers = max(1, min(_MAX_WORKERS, os.cpu_count() or 1))
    pending: deque[tuple[str, Future[Decoded], int]] = deque()
    held = [0]  # bytes of archive members waiting in `pending`

    def collect() -> None:
        name, fut, nbytes = pending.popleft()
        held[0] -= nbytes
        try:
            decoded[name] = fut.result()
        except ImageReadError as exc:
            rejected.append(Rejected(name, exc.reason))
        except OSError:
            rejected.append(Rejected(name, "unreadable file"))

    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="synthaudit-decode") as pool:
        for item, fraction in items:
            if isinstance(item, Rejected):
                rejected.append(item)
                continue
            if isinstance(item, Ignored):
                ignored.append(item.name)
                continue
            candidates.append(item.name)
            pending.append((item.name, pool.submit(_decode_entry, item, size, nifti_axis), item.nbytes))
            held[0] += item.nbytes
            while len(pending) > 4 * workers or (held[0] > _MAX_PENDING_BYTES and len(pending) > 1):
                collect()
            progress(fraction * 0.99)
        while pending:
            collect()
    return decoded, candidates, rejected, ignored


def load_images(
    source: str | Path,
    size: int,
    on_progress: ProgressFn | None = None,
    limits: ArchiveLimits = DEFAULT_LIMITS,
    nifti_axis: str = "axial",
) -> ImageSet:
    """Load every image under a folder, a single file or a .zip/.tar(.gz/.bz2/.xz) archive.

    Returns ids sorted ascending with images uint8 [N, size, size] (a NIfTI volume gives one image per
    kept slice along `nifti_axis`, id ``<volume id>_z042``: models/nifti.py); files with an image suffix
    that fail to decode are listed in ``rejected``, and so are the archive members the limits refuse
    (an archive's members and unpacked bytes draw on one budget per source). Raises EmptySetError when
    nothing decodes and DuplicateIdError when two files share an id.
    """
    if size < 1:
        raise ValueError(f"size must be positive, got {size}")
    src = Path(source)
    progress = _Progress(on_progress)
    decoded, candidates, rejected, ignored = _decode_all(
        _source_items(src, limits), size, progress, nifti_axis
    )
    rejected.sort(key=lambda r: r.name)
    ignored.sort()
    if not decoded:
        raise EmptySetError(_empty_message(src, rejected, ignored))
    id_of = image_ids(candidates)
    found = [
        (id_of[name] + suffix, arr, shape) for name, parts in decoded.items() for suffix, arr, shape in parts
    ]
    dups = _duplicates([i for i, _, _ in found])
    if dups:
        raise DuplicateIdError(dups)
    found.sort(key=lambda p: p[0])
    images = np.stack([arr for _, arr, _ in found]).astype(np.uint8, copy=False)
    progress(1.0, force=True)
    shapes = [shape for _, _, shape in found]
    note = resize_note(shapes, size)
    source_side = int(np.median([min(shape) for shape in shapes]))
    return ImageSet(
        ids=[i for i, _, _ in found],
        images=images,
        rejected=rejected,
        ignored=ignored,
        resized=note,
        source_side=source_side,
    )


def _empty_message(src: Path, rejected: list[Rejected], ignored: list[str]) -> str:
    """What an empty set saw: how many files, a few names, and why none is a usable image."""
    where = src.name or str(src)
    if not rejected and not ignored:
        return f"no readable images in {where}: it holds no files"
    parts = []
    if rejected:
        shown = "; ".join(f"{r.name}: {r.reason}" for r in rejected[:3])
        parts.append(
            f"{len(rejected)} image file(s) could not be read ({shown}{'; ...' if len(rejected) > 3 else ''})"
        )
    if ignored:
        shown = ", ".join(ignored[:3]) + (", ..." if len(ignored) > 3 else "")
        parts.append(
            f"{len(ignored)} file(s) are not images ({shown}; read are PNG, JPEG, TIFF, BMP, DICOM and NIfTI)"
        )
    return f"no readable images in {where}: " + "; ".join(parts)
