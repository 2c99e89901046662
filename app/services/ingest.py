"""Uploads → a staged folder of images: streamed copies, archive extraction with limits, engine validation.

Files are copied in 1 MiB chunks (hashing as they go), archives are unpacked member by member by the
reader the CLI uses too (`models.archives`: one budget of members and unpacked bytes per request), and
every file is decoded once with the engine's decoder (`models.io.decode_image`), so a dataset holds
exactly the images, with exactly the ids (`models.io.image_ids`), that the audit's decode stage sees.
"""

from __future__ import annotations

import hashlib
import io
import shutil
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from synthaudit.models.archives import (
    ArchiveError,
    ArchiveLimits,
    Budget,
    Member,
    MemberError,
    Skipped,
    display_name,
    is_archive_name,
    is_hidden,
    read_archive,
    safe_relpath,
)

__all__ = ["IngestResult", "NoImagesError", "StoredImage", "UploadLimits", "ingest_uploads", "safe_relpath"]

CHUNK = 1024 * 1024
DECODE_WORKERS = 4
MAX_REJECTED_LISTED = 1000
"""Rejected files named one by one in an upload's answer; the rest are counted in one last entry."""


@dataclass(frozen=True)
class UploadLimits:
    """Per-request limits on what an upload may unpack to."""

    max_image_bytes: int
    max_archive_members: int  # entries of all the request's archives together
    max_extracted_bytes: int  # bytes unpacked from all the request's archives together
    max_image_pixels: int = 64_000_000  # width x height (x frames): decompression-bomb guard

    def archive_limits(self) -> ArchiveLimits:
        """The same limits in the form the archive reader (shared with the CLI) takes."""
        return ArchiveLimits(
            max_member_bytes=self.max_image_bytes,
            max_members=self.max_archive_members,
            max_extracted_bytes=self.max_extracted_bytes,
        )


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
        super().__init__(
            "none of the uploaded files is a readable image (PNG, JPEG, TIFF, BMP, DICOM or NIfTI)"
        )
        self.rejected = rejected


class _TooLarge(Exception):
    pass


def _is_archive(name: str) -> bool:
    return is_archive_name(name)


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
        self.budget = Budget(limits.archive_limits())  # one budget for all archives of the request
        self.files: dict[str, tuple[str, str, int]] = {}  # relpath -> (display name, sha256, size)
        self.rejected: list[dict[str, str]] = []
        self.unlisted = 0  # rejections past MAX_REJECTED_LISTED

    def reject(self, name: str, reason: str, always: bool = False) -> None:
        """List a rejected file; past MAX_REJECTED_LISTED only count it, unless `always` (a whole
        archive's reason: one per uploaded file at most)."""
        if always or len(self.rejected) < MAX_REJECTED_LISTED:
            self.rejected.append({"name": display_name(name), "reason": reason})
        else:
            self.unlisted += 1

    def rejections(self) -> list[dict[str, str]]:
        """The rejected files, the ones past MAX_REJECTED_LISTED summed up in a last entry."""
        if not self.unlisted:
            return self.rejected
        return [
            *self.rejected,
            {"name": f"({self.unlisted} more)", "reason": f"{self.unlisted} more files rejected"},
        ]

    def add_stream(self, relpath: str, display: str, stream: BinaryIO) -> None:
        if relpath in self.files:
            self.reject(display, "another uploaded file has the same path")
            return
        try:
            sha, size = _copy_limited(stream, self.images_dir / relpath, self.limits.max_image_bytes)
        except _TooLarge:
            self.reject(display, f"file larger than {self.limits.max_image_bytes} bytes")
            return
        except MemberError as exc:
            self.reject(display, exc.reason)
            return
        except (OSError, EOFError):
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
        elif is_hidden(base):
            self.reject(base, "hidden file")
        else:
            self.add_stream(base, base, stream)

    def add_archive(self, name: str, stream: BinaryIO) -> None:
        """Copy the archive to the staging folder, then stage its members within the request's budget."""
        if self.budget.spent is not None:  # an earlier archive spent the request's budget: not even copied
            self.reject(name, self.budget.spent, always=True)
            return
        self.archives_dir.mkdir(exist_ok=True)
        path = self.archives_dir / f"{len(list(self.archives_dir.iterdir()))}-{name}"
        try:
            _copy_limited(stream, path, 1 << 62)  # the request body limit bounds it
            for item in read_archive(path, self.budget, name):
                if isinstance(item, Skipped):
                    self.reject(f"{name}:{item.name}", item.reason)
                else:
                    self._add_member(name, item)
        except ArchiveError as exc:  # BudgetExceeded included: the rest of the archive is skipped
            self.reject(name, exc.reason, always=True)
        finally:
            path.unlink(missing_ok=True)

    def _add_member(self, archive: str, member: Member) -> None:
        display = f"{archive}:{member.name}"
        if member.relpath in self.files:
            self.reject(display, "another uploaded file has the same path")
            return
        try:
            stream = member.open()
        except MemberError as exc:
            self.reject(display, exc.reason)
            return
        try:
            self.add_stream(member.relpath, display, stream)
        finally:
            stream.close()


def _check_file(path: Path, relpath: str, max_pixels: int = 64_000_000) -> tuple[str | None, str | None]:
    """Decode one staged file: (suffix to add so the engine's loader picks it up, or None; error or None)."""
    from synthaudit.models.io import ImageReadError, decode_image, is_image_name

    data = path.read_bytes()
    try:
        decode_image(data, relpath, max_pixels)  # the CLI's decoder, checks included (dicom, nifti)
    except ImageReadError as exc:
        return None, exc.reason
    except Exception as exc:  # noqa: BLE001 - a bad file is a rejection, never a failed upload
        return None, f"cannot decode image ({type(exc).__name__})"
    if is_image_name(relpath):
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
    from synthaudit.models.io import image_ids

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
        raise NoImagesError(stager.rejections())
    return IngestResult(images_dir=stager.images_dir, images=images, rejected=stager.rejections())
