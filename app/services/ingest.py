"""Uploads → a staged folder of images: streamed copies, archive extraction with limits, engine validation.

Files are copied in 1 MiB chunks (hashing as they go), archives are unpacked member by member, and
every file is decoded once with the engine's decoder (`models.io.decode_image`), so a dataset holds
exactly the images, with exactly the ids (`models.io.image_ids`), that the audit's decode stage sees.
"""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import lzma
import re
import shutil
import tarfile
import warnings
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

CHUNK = 1024 * 1024
DECODE_WORKERS = 4
ARCHIVE_SUFFIXES = (".zip", ".tar", ".tar.gz", ".tgz")
_DRIVE = re.compile(r"^[A-Za-z]:")


@dataclass(frozen=True)
class UploadLimits:
    """Per-request limits on what an upload may unpack to."""

    max_image_bytes: int
    max_archive_members: int
    max_extracted_bytes: int
    max_image_pixels: int = 64_000_000  # width x height (x frames): decompression-bomb guard


@dataclass(frozen=True)
class StoredImage:
    """An image kept in the dataset: its id, its path under the images folder, hash and size."""

    name: str
    file_name: str
    sha256: str
    size_bytes: int


@dataclass
class IngestResult:
    """What an upload produced: the staged images folder, the images kept and the files rejected."""

    images_dir: Path
    images: list[StoredImage] = field(default_factory=list)
    rejected: list[dict[str, str]] = field(default_factory=list)

    @property
    def total_bytes(self) -> int:
        return sum(i.size_bytes for i in self.images)


class NoImagesError(ValueError):
    """Nothing readable was uploaded."""

    def __init__(self, rejected: list[dict[str, str]]) -> None:
        super().__init__("none of the uploaded files is a readable image (PNG, JPEG, TIFF, BMP or DICOM)")
        self.rejected = rejected


class _TooLarge(Exception):
    pass


def _is_archive(name: str) -> bool:
    return name.lower().endswith(ARCHIVE_SUFFIXES)


def _is_hidden(relpath: str) -> bool:
    return any(p.startswith(".") or p == "__MACOSX" for p in PurePosixPath(relpath).parts)


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


def _copy_limited(src: BinaryIO, dest: Path, limit: int) -> tuple[str, int]:
    """Stream src into dest; return (sha256, size); raise _TooLarge (dest removed) past limit bytes."""
    digest, size = hashlib.sha256(), 0
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(dest, "wb") as out:
            while chunk := src.read(CHUNK):
                size += len(chunk)
                if size > limit:
                    raise _TooLarge
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return digest.hexdigest(), size


class _Stager:
    """Collects files into <staging>/images, remembering each file's display name, hash and size."""

    def __init__(self, staging: Path, limits: UploadLimits) -> None:
        self.images_dir = staging / "images"
        self.images_dir.mkdir(parents=True)
        self.archives_dir = staging / "archives"
        self.limits = limits
        self.files: dict[str, tuple[str, str, int]] = {}  # relpath -> (display name, sha256, size)
        self.rejected: list[dict[str, str]] = []

    def reject(self, name: str, reason: str) -> None:
        self.rejected.append({"name": display_name(name), "reason": reason})

    def add_stream(self, relpath: str, display: str, stream: BinaryIO) -> None:
        if relpath in self.files:
            self.reject(display, "another uploaded file has the same path")
            return
        try:
            sha, size = _copy_limited(stream, self.images_dir / relpath, self.limits.max_image_bytes)
        except _TooLarge:
            self.reject(display, f"file larger than {self.limits.max_image_bytes} bytes")
            return
        except (OSError, EOFError, zipfile.BadZipFile, tarfile.TarError):
            (self.images_dir / relpath).unlink(missing_ok=True)
            self.reject(display, "could not be read (truncated or corrupt)")
            return
        self.files[relpath] = (display, sha, size)

    def add_upload(self, filename: str, stream: BinaryIO) -> None:
        base = PurePosixPath((filename or "").replace("\\", "/")).name
        if not base:
            self.reject(filename or "(unnamed)", "file part without a file name")
        elif safe_relpath(base) is None:
            self.reject(base, "unusable file name (control characters, or too long)")
        elif _is_archive(base):
            self.add_archive(base, stream)
        elif _is_hidden(base):
            self.reject(base, "hidden file")
        else:
            self.add_stream(base, base, stream)

    def add_archive(self, name: str, stream: BinaryIO) -> None:
        self.archives_dir.mkdir(exist_ok=True)
        path = self.archives_dir / f"{len(list(self.archives_dir.iterdir()))}-{name}"
        try:
            _copy_limited(stream, path, 1 << 62)
            if name.lower().endswith(".zip"):
                self._unzip(name, path)
            else:
                self._untar(name, path)
        finally:
            path.unlink(missing_ok=True)

    def _member(self, archive: str, member: str, size: int, budget: list[int]) -> str | None:
        """The member's relpath when it may be extracted, else None (rejected or skipped)."""
        display = f"{archive}:{member}"
        relpath = safe_relpath(member)
        if relpath is None:
            self.reject(display, "unsafe path in archive")
        elif _is_hidden(relpath):
            return None
        elif _is_archive(relpath):
            self.reject(display, "archives inside archives are not read")
        elif size > self.limits.max_image_bytes:
            self.reject(display, f"file larger than {self.limits.max_image_bytes} bytes")
        elif budget[0] + size > self.limits.max_extracted_bytes:
            self.reject(display, f"the upload unpacks to more than {self.limits.max_extracted_bytes} bytes")
        else:
            budget[0] += size
            return relpath
        return None

    def _unzip(self, name: str, path: Path) -> None:
        declared = _zip_entry_count(path)
        if declared is not None and declared > ZIP_DIRECTORY_FACTOR * self.limits.max_archive_members:
            # Refused before its central directory is parsed (millions of entries would fill memory).
            self.reject(name, f"{declared} members, far more than {self.limits.max_archive_members}")
            return
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError):
            self.reject(name, "not a readable zip archive")
            return
        with zf:
            budget = [0]
            infos = [i for i in zf.infolist() if not i.is_dir()]
            for count, info in enumerate(infos):
                if count >= self.limits.max_archive_members:
                    self.reject(
                        name, f"more than {self.limits.max_archive_members} members; the rest was skipped"
                    )
                    break
                if (info.external_attr >> 16) & 0o170000 not in (0, 0o100000):
                    self.reject(f"{name}:{info.filename}", "link or special file in archive")
                    continue
                relpath = self._member(name, info.filename, info.file_size, budget)
                if relpath is None:
                    continue
                try:
                    with zf.open(info) as member:
                        self.add_stream(relpath, f"{name}:{info.filename}", member)
                except RuntimeError:
                    self.reject(f"{name}:{info.filename}", "encrypted archive member")
                except (zipfile.BadZipFile, OSError, EOFError, ValueError):
                    self.reject(f"{name}:{info.filename}", "corrupt archive member")

    def _untar(self, name: str, path: Path) -> None:
        budget, count = [0], 0
        # The decompressed stream is capped too: a gzip bomb is stopped after that many bytes, even
        # where it hides in members that are skipped (tarfile would otherwise inflate them to skip).
        cap = self.limits.max_extracted_bytes + 1024 * (self.limits.max_archive_members + 16)
        try:
            with _open_tar_stream(path, cap) as stream, tarfile.open(fileobj=stream, mode="r|") as tf:
                for member in tf:
                    if member.isdir():
                        continue
                    count += 1
                    if count > self.limits.max_archive_members:
                        self.reject(
                            name, f"more than {self.limits.max_archive_members} members; the rest was skipped"
                        )
                        break
                    if not member.isfile():
                        self.reject(f"{name}:{member.name}", "link or special file in archive")
                        continue
                    relpath = self._member(name, member.name, member.size, budget)
                    fh = tf.extractfile(member) if relpath else None
                    if relpath and fh is not None:
                        self.add_stream(relpath, f"{name}:{member.name}", fh)
        except _TooLarge:
            self.reject(
                name,
                f"the archive unpacks to more than {self.limits.max_extracted_bytes} bytes; rest skipped",
            )
        except (tarfile.TarError, OSError, EOFError, ValueError, zlib.error, lzma.LZMAError):
            self.reject(name, "not a readable tar archive (or truncated); later members skipped")


ZIP_DIRECTORY_FACTOR = 10


def _zip_entry_count(path: Path) -> int | None:
    """The entry count the zip's end-of-central-directory record declares (None when unreadable)."""
    try:
        with open(path, "rb") as fh:
            end = zipfile._EndRecData(fh)  # type: ignore[attr-defined]  # stable since Python 2
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        return None
    return int(end[zipfile._ECD_ENTRIES_TOTAL]) if end else None  # type: ignore[attr-defined]


class _CappedReader(io.RawIOBase):
    """A read-only stream that raises _TooLarge once more than `cap` bytes were read through it."""

    def __init__(self, inner: BinaryIO, cap: int) -> None:
        self.inner, self.cap, self.count = inner, cap, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        data = self.inner.read(min(len(buffer), CHUNK))
        self.count += len(data)
        if self.count > self.cap:
            raise _TooLarge
        buffer[: len(data)] = data
        return len(data)


@contextmanager
def _open_tar_stream(path: Path, cap: int) -> Iterator[BinaryIO]:
    """The tar bytes of a plain, gzip, bzip2 or xz file (chosen by content), capped at `cap` bytes."""
    with open(path, "rb") as raw:
        magic = raw.read(6)
        raw.seek(0)
        inner: Any
        if magic.startswith(b"\x1f\x8b"):
            inner = gzip.GzipFile(fileobj=raw)
        elif magic.startswith(b"BZh"):
            inner = bz2.BZ2File(raw)
        elif magic.startswith(b"\xfd7zXZ\x00"):
            inner = lzma.LZMAFile(raw)  # noqa: SIM115 - entered below
        else:
            inner = nullcontext(raw)
        with inner as stream:
            yield io.BufferedReader(_CappedReader(stream, cap), CHUNK)  # type: ignore[misc]


def _too_many_pixels(data: bytes, max_pixels: int) -> str | None:
    """A reason when the header declares more pixels than allowed (read before anything is decoded)."""
    width = height = frames = 0
    if data[128:132] == b"DICM":
        try:
            import pydicom

            ds = pydicom.dcmread(io.BytesIO(data), stop_before_pixels=True)
            height, width = int(ds.get("Rows", 0) or 0), int(ds.get("Columns", 0) or 0)
            frames = int(ds.get("NumberOfFrames", 1) or 1)
        except Exception:  # noqa: BLE001 - the decoder reports unreadable files
            return None
    else:
        from PIL import Image

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(io.BytesIO(data)) as im:
                    width, height = im.size
                    frames = 1
        except Image.DecompressionBombError:
            return f"image too large (decompression bomb guard; limit {max_pixels} pixels)"
        except Exception:  # noqa: BLE001 - not an image Pillow knows: the decoder reports it
            return None
    if width * height * max(frames, 1) > max_pixels:
        return f"image too large ({width}x{height} pixels x {max(frames, 1)} frame(s); limit {max_pixels})"
    return None


def _check_file(path: Path, relpath: str, max_pixels: int = 64_000_000) -> tuple[str | None, str | None]:
    """Decode one staged file: (suffix to add so the engine's loader picks it up, or None; error or None)."""
    from models.io import IMAGE_SUFFIXES, ImageReadError, decode_image

    data = path.read_bytes()
    too_large = _too_many_pixels(data, max_pixels)
    if too_large:
        return None, too_large
    try:
        decode_image(data, relpath)
    except ImageReadError as exc:
        return None, exc.reason
    except Exception as exc:  # noqa: BLE001 - a bad file is a rejection, never a failed upload
        return None, f"cannot decode image ({type(exc).__name__})"
    if PurePosixPath(relpath).suffix.lower() in IMAGE_SUFFIXES:
        return None, None
    if data[128:132] == b"DICM":
        return ".dcm", None
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        return _PIL_SUFFIX.get(im.format or "", ".png"), None


_PIL_SUFFIX = {"PNG": ".png", "JPEG": ".jpg", "TIFF": ".tif", "BMP": ".bmp"}


def _validate(stager: _Stager) -> list[StoredImage]:
    """Decode every staged file with the engine's decoder; keep readable ones under an image suffix.

    Afterwards every kept file has an image suffix and decodes, so the engine's folder loader sees
    exactly these files and derives exactly the ids stored here.
    """
    from models.io import image_ids

    relpaths = list(stager.files)
    with ThreadPoolExecutor(max_workers=DECODE_WORKERS, thread_name_prefix="synthaudit-ingest") as pool:
        max_pixels = stager.limits.max_image_pixels
        checks = list(pool.map(lambda rel: _check_file(stager.images_dir / rel, rel, max_pixels), relpaths))
    kept: dict[str, tuple[str, str, int]] = {}
    for relpath, (suffix, error) in zip(relpaths, checks, strict=True):
        entry = stager.files[relpath]
        if error is not None:
            _delete(stager, relpath, entry[0], error)
            continue
        if suffix is not None:
            target = relpath + suffix
            if target in stager.files or target in kept:
                _delete(stager, relpath, entry[0], "another uploaded file has the same path")
                continue
            (stager.images_dir / relpath).rename(stager.images_dir / target)
            relpath = target
        kept[relpath] = entry
    stager.files = kept
    seen: set[str] = set()
    for relpath, id_ in image_ids(list(stager.files)).items():  # a.png + a.jpg: keep the first
        if id_ in seen:
            _drop(stager, relpath, f"another file has the same image id {id_!r}")
        seen.add(id_)
    ids = image_ids(list(stager.files))
    return [
        StoredImage(name=ids[rel], file_name=rel, sha256=sha, size_bytes=size)
        for rel, (_display, sha, size) in sorted(stager.files.items())
    ]


def _drop(stager: _Stager, relpath: str, reason: str) -> None:
    _delete(stager, relpath, stager.files.pop(relpath)[0], reason)


def _delete(stager: _Stager, relpath: str, display: str, reason: str) -> None:
    (stager.images_dir / relpath).unlink(missing_ok=True)
    stager.reject(display, reason)


def ingest_uploads(
    uploads: Iterable[tuple[str, BinaryIO]], staging: Path, limits: UploadLimits
) -> IngestResult:
    """Stage (file name, stream) uploads under staging/images; raise NoImagesError when none is usable."""
    stager = _Stager(staging, limits)
    for filename, stream in uploads:
        stager.add_upload(filename, stream)
    images = _validate(stager)
    shutil.rmtree(stager.archives_dir, ignore_errors=True)
    if not images:
        raise NoImagesError(stager.rejected)
    return IngestResult(images_dir=stager.images_dir, images=images, rejected=stager.rejected)
