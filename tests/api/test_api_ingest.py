"""Upload staging in-process: archives, unsafe members, limits, duplicates, files without suffix."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from synthaudit.app.services.ingest import NoImagesError, UploadLimits, ingest_uploads, safe_relpath
from synthaudit.models.io import load_images

LIMITS = UploadLimits(max_image_bytes=1_000_000, max_archive_members=100, max_extracted_bytes=10_000_000)


def png(seed: int, size: int = 16) -> bytes:
    arr = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def zip_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def tgz_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def ingest(tmp_path: Path, uploads: dict[str, bytes], limits: UploadLimits = LIMITS):  # type: ignore[no-untyped-def]
    staging = tmp_path / "staging"
    staging.mkdir()
    return ingest_uploads(((n, io.BytesIO(d)) for n, d in uploads.items()), staging, limits)


def reasons(result) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {r["name"]: r["reason"] for r in result.rejected}


def test_files_and_archives_become_one_folder_with_the_engines_ids(tmp_path: Path) -> None:
    result = ingest(
        tmp_path,
        {
            "a.png": png(1),
            "set.zip": zip_bytes({"inner/b.png": png(2), "inner/c.png": png(3)}),
            "more.tar.gz": tgz_bytes({"d.png": png(4)}),
        },
    )
    names = sorted(i.name for i in result.images)
    assert names == ["a", "d", "inner/b", "inner/c"]
    assert result.rejected == []
    loaded = load_images(result.images_dir, size=8)
    assert sorted(loaded.ids) == names  # the audit's decode stage sees the same ids
    assert all(len(i.sha256) == 64 and i.size_bytes > 0 for i in result.images)


def test_single_wrapping_folder_is_not_part_of_the_id(tmp_path: Path) -> None:
    result = ingest(tmp_path, {"set.zip": zip_bytes({"real/x1.png": png(1), "real/x2.png": png(2)})})
    assert sorted(i.name for i in result.images) == ["x1", "x2"]
    assert sorted(load_images(result.images_dir, size=8).ids) == ["x1", "x2"]


def test_bad_files_are_rejected_with_reasons(tmp_path: Path) -> None:
    result = ingest(
        tmp_path,
        {
            "good.png": png(1),
            "broken.png": png(2)[:40],
            "notes.txt": b"hello",
            "evil.zip": zip_bytes({"../escape.png": png(3), "nested.zip": b"PK", ".hidden.png": png(4)}),
        },
    )
    assert [i.name for i in result.images] == ["good"]
    why = reasons(result)
    assert "broken.png" in why and "notes.txt" in why
    assert why["evil.zip:../escape.png"] == "unsafe path in archive"
    assert "inside archives" in why["evil.zip:nested.zip"]
    assert not any("hidden" in name for name in why)  # hidden files are skipped silently
    assert not (tmp_path / "escape.png").exists()


def test_duplicate_ids_keep_the_first_file(tmp_path: Path) -> None:
    result = ingest(tmp_path, {"x.png": png(1), "set.zip": zip_bytes({"x.png": png(2), "x.jpg": png(3)})})
    assert [i.name for i in result.images] == ["x"]
    assert len(result.rejected) == 2


def test_an_image_without_suffix_is_kept_under_an_image_suffix(tmp_path: Path) -> None:
    result = ingest(tmp_path, {"IM0001": png(1), "IM0002.png": png(2)})
    assert sorted(i.name for i in result.images) == ["IM0001", "IM0002"]
    assert sorted(load_images(result.images_dir, size=8).ids) == ["IM0001", "IM0002"]


def test_limits(tmp_path: Path) -> None:
    small = UploadLimits(max_image_bytes=200, max_archive_members=2, max_extracted_bytes=10_000_000)
    result = ingest(
        tmp_path,
        {
            "big.png": png(1, size=64),
            "many.zip": zip_bytes({f"m{i}.png": png(i, size=4) for i in range(4)}),
        },
        small,
    )
    why = reasons(result)
    assert "larger than" in why["big.png"]
    assert "more than 2 archive members" in why["many.zip"]
    assert len(result.images) == 2


def test_nothing_readable_raises(tmp_path: Path) -> None:
    with pytest.raises(NoImagesError) as err:
        ingest(tmp_path, {"a.txt": b"x", "b.png": b"not a png"})
    assert len(err.value.rejected) == 2


@pytest.mark.parametrize("name", ["/abs.png", "../up.png", "a/../../b.png", "C:/win.png", ""])
def test_unsafe_member_paths(name: str) -> None:
    assert safe_relpath(name) is None


def test_safe_member_paths() -> None:
    assert safe_relpath("./a//b\\c.png") == "a/b/c.png"
