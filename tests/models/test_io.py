"""synthaudit.models.io: folders, files and archives of PNG/JPEG/TIFF/BMP/DICOM -> uint8 [N, S, S]."""

from __future__ import annotations

import io
import stat
import struct
import tarfile
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

from synthaudit.models.io import (
    IMAGE_SUFFIXES,
    DuplicateIdError,
    EmptySetError,
    ImageReadError,
    ImageSetError,
    decode_image,
    load_images,
)


def gray(value: int, shape: tuple[int, int] = (16, 16)) -> np.ndarray:
    return np.full(shape, value, dtype=np.uint8)


def reasons(image_set) -> dict[str, str]:
    return {r.name: r.reason for r in image_set.rejected}


def test_exceptions_share_a_value_error_base() -> None:
    for exc in (ImageReadError, EmptySetError, DuplicateIdError):
        assert issubclass(exc, ImageSetError)
    assert issubclass(ImageSetError, ValueError)
    assert {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".dcm"} <= set(IMAGE_SUFFIXES)


def test_folder_of_pillow_formats(tmp_path: Path, build) -> None:
    build.write_image(tmp_path / "b_png.png", gray(100))
    build.write_image(tmp_path / "a_jpg.jpg", gray(128), "JPEG")
    build.write_image(tmp_path / "c_tif.tiff", gray(30), "TIFF")
    build.write_image(tmp_path / "d_bmp.bmp", gray(200), "BMP")
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[..., 0] = 255
    build.write_image(tmp_path / "e_rgb.png", rgb)
    rgba = np.dstack([rgb, np.full((16, 16), 7, np.uint8)])
    build.write_image(tmp_path / "f_rgba.png", rgba)

    s = load_images(tmp_path, 16)

    assert s.ids == ["a_jpg", "b_png", "c_tif", "d_bmp", "e_rgb", "f_rgba"]
    assert s.images.dtype == np.uint8 and s.images.shape == (6, 16, 16)
    assert abs(int(s.images[0].mean()) - 128) <= 2  # lossy JPEG
    assert (s.images[1] == 100).all() and (s.images[2] == 30).all() and (s.images[3] == 200).all()
    assert (s.images[4] == 76).all() and (s.images[5] == 76).all()  # ITU-R 601 luma of pure red
    assert s.rejected == []


def test_resize_to_square_and_16_bit_min_max(tmp_path: Path, build) -> None:
    ramp = np.tile(np.linspace(1000, 3000, 40).astype(np.uint16), (20, 1))  # 20 x 40, 16-bit
    build.write_image(tmp_path / "wide16.png", ramp)
    build.write_image(tmp_path / "wide16.tif", ramp, "TIFF")
    build.write_image(tmp_path / "big.png", gray(77, (64, 64)))

    native = decode_image((tmp_path / "wide16.png").read_bytes(), "wide16.png")
    assert native.shape == (20, 40) and native.dtype == np.uint8
    assert native.min() == 0 and native.max() == 255

    with pytest.raises(DuplicateIdError):
        load_images(tmp_path, 8)
    (tmp_path / "wide16.tif").rename(tmp_path / "wide16_tif.tif")
    s = load_images(tmp_path, 8)
    assert s.images.shape == (3, 8, 8)
    assert (s.images[s.ids.index("big")] == 77).all()
    for name in ("wide16", "wide16_tif"):
        img = s.images[s.ids.index(name)].astype(int)
        assert img[:, 0].max() < 40 and img[:, -1].min() > 215  # min-max scaled, then resized
        assert (np.diff(img, axis=1) >= 0).all()


def test_dicom_rescale_window_and_monochrome1(build) -> None:
    raw = np.array([[300, 500, 700]] * 4, dtype=np.int16)  # HU = 2*raw - 1000 -> -400, 0, 400
    data = build.dicom_bytes(raw, slope=2.0, intercept=-1000.0, window=(0.0, 400.0))
    out = decode_image(data, "ct.dcm")
    assert out.dtype == np.uint8 and out.shape == (4, 3)
    assert out[0].tolist() == [0, 128, 255]

    inverted = decode_image(
        build.dicom_bytes(raw, slope=2.0, intercept=-1000.0, window=(0.0, 400.0), photometric="MONOCHROME1"),
        "ct.dcm",
    )
    assert inverted[0].tolist() == [255, 127, 0]

    # Window wider than the data: values map inside 0..255 without clipping.
    wide = decode_image(build.dicom_bytes(raw, slope=2.0, intercept=-1000.0, window=(0.0, 2000.0)), "w.dcm")
    assert 0 < wide[0, 0] < wide[0, 1] < wide[0, 2] < 255


def test_dicom_without_window_uses_min_max_and_multiframe_middle(build) -> None:
    ramp = np.array([[10, 20, 30]], dtype=np.int16)
    assert decode_image(build.dicom_bytes(ramp), "m.dcm")[0].tolist() == [0, 128, 255]

    frames = np.stack([ramp, ramp[:, ::-1], ramp]).astype(np.int16)  # middle frame is reversed
    assert decode_image(build.dicom_bytes(frames), "mf.dcm")[0].tolist() == [255, 128, 0]


def test_dicom_detected_by_content_and_by_suffix(tmp_path: Path, build) -> None:
    raw = np.array([[0, 100]] * 2, dtype=np.int16)
    (tmp_path / "IM0001").write_bytes(build.dicom_bytes(raw))  # no suffix: DICM magic
    (tmp_path / "nopreamble.dcm").write_bytes(build.dicom_bytes(raw, preamble=False))
    (tmp_path / "1.2.840.1").write_bytes(build.dicom_bytes(raw))  # UID-like name: dots kept
    s = load_images(tmp_path, 2)
    assert s.ids == ["1.2.840.1", "IM0001", "nopreamble"]
    assert all(img[:, 0].max() == 0 and img[:, 1].min() == 255 for img in s.images)


def test_corrupt_files_are_rejected_by_name_and_skipped(tmp_path: Path, build) -> None:
    good = build.png_bytes(gray(50))
    (tmp_path / "good.png").write_bytes(good)
    (tmp_path / "truncated.png").write_bytes(good[: len(good) // 2])
    (tmp_path / "x.png").write_text("this is not an image\n")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "broken.dcm").write_bytes(build.dicom_bytes(np.zeros((8, 8), np.int16))[:200])
    (tmp_path / "labels.csv").write_text("id,used\ngood,1\n")
    (tmp_path / "README").write_text("notes")
    (tmp_path / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
    (tmp_path / ".hidden.png").write_bytes(b"junk")

    s = load_images(tmp_path, 16)

    assert s.ids == ["good"]
    got = reasons(s)
    assert set(got) == {"truncated.png", "x.png", "empty.jpg", "broken.dcm"}
    for reason in got.values():
        assert 0 < len(reason) < 100 and "Secret" not in reason


def test_decode_image_raises_image_read_error() -> None:
    with pytest.raises(ImageReadError, match="notes.png"):
        decode_image(b"hello world", "notes.png")


def _png_with_size(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height (no pixel data needed to trip the guard)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n"
        + struct.pack(">I", len(ihdr))
        + chunk
        + struct.pack(">I", zlib.crc32(chunk))
        + struct.pack(">I", 0)
        + b"IEND"
        + struct.pack(">I", zlib.crc32(b"IEND"))
    )


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bomb_is_rejected(tmp_path: Path, build) -> None:
    (tmp_path / "bomb.png").write_bytes(_png_with_size(30_000, 30_000))
    (tmp_path / "warnbomb.png").write_bytes(_png_with_size(9_000, 9_000))
    build.write_image(tmp_path / "ok.png", gray(1))
    s = load_images(tmp_path, 8)
    assert s.ids == ["ok"]
    assert "too large" in reasons(s)["bomb.png"]
    assert "too large" in reasons(s)["warnbomb.png"]


def test_subfolder_ids_and_common_wrapper_folder(tmp_path: Path, build) -> None:
    root = tmp_path / "data"
    build.write_image(root / "real" / "a" / "x.png", gray(1))
    build.write_image(root / "real" / "b" / "x.png", gray(2))
    build.write_image(root / "real" / "top.png", gray(3))
    s = load_images(root, 4)
    assert s.ids == ["a/x", "b/x", "top"]  # the single wrapping folder 'real' is not part of ids
    assert [int(img[0, 0]) for img in s.images] == [1, 2, 3]


def test_single_file_source(tmp_path: Path, build) -> None:
    path = build.write_image(tmp_path / "one.bmp", gray(9, (10, 12)), "BMP")
    s = load_images(path, 5)
    assert s.ids == ["one"] and s.images.shape == (1, 5, 5)


def test_duplicate_ids_raise(tmp_path: Path, build) -> None:
    build.write_image(tmp_path / "a.png", gray(1))
    build.write_image(tmp_path / "a.jpg", gray(1), "JPEG")
    build.write_image(tmp_path / "b.png", gray(1))
    with pytest.raises(DuplicateIdError, match="a") as info:
        load_images(tmp_path, 8)
    assert info.value.ids == ["a"]


def test_empty_set_raises_with_source_name(tmp_path: Path) -> None:
    folder = tmp_path / "nothing_here"
    folder.mkdir()
    (folder / "README.txt").write_text("no images")
    (folder / "bad.png").write_text("still no images")
    with pytest.raises(EmptySetError, match="no readable images in nothing_here"):
        load_images(folder, 8)


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_zip_archive(tmp_path: Path, build) -> None:
    members = {f"real/img_{i:02d}.png": build.png_bytes(gray(i)) for i in range(5)}
    members["real/"] = b""
    members["real/labels.csv"] = b"id,used\n"
    members["__MACOSX/real/._img_00.png"] = b"\x00\x05\x16\x07"
    members["real/ct.dcm"] = build.dicom_bytes(np.array([[0, 5]], np.int16))
    archive = _zip(tmp_path / "real.zip", members)

    calls: list[float] = []
    s = load_images(archive, 8, on_progress=calls.append)

    assert s.ids == ["ct", "img_00", "img_01", "img_02", "img_03", "img_04"]
    assert [int(img[0, 0]) for img in s.images[1:]] == [0, 1, 2, 3, 4]
    assert s.rejected == []
    assert calls and calls[-1] == 1.0 and calls == sorted(calls)


def test_zip_slip_and_links_are_rejected(tmp_path: Path, build) -> None:
    png = build.png_bytes(gray(10))
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("ok.png", png)
        zf.writestr("../escape.png", png)
        zf.writestr("/abs.png", png)
        zf.writestr("..\\win.png", png)
        link = zipfile.ZipInfo("link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    s = load_images(archive, 8)
    assert s.ids == ["ok"]
    got = reasons(s)
    assert {n for n, r in got.items() if "unsafe" in r} == {"../escape.png", "/abs.png", "..\\win.png"}
    assert "link" in got["link.png"]
    assert not (tmp_path.parent / "escape.png").exists()


def _tar(path: Path, members: dict[str, bytes], mode: str = "w:gz") -> tarfile.TarFile:
    tf = tarfile.open(path, mode)  # noqa: SIM115 - the caller closes it
    for name, data in members.items():
        info = tarfile.TarInfo(name)
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    return tf


@pytest.mark.parametrize("suffix,mode", [(".tar.gz", "w:gz"), (".tgz", "w:gz"), (".tar", "w")])
def test_tar_archives(tmp_path: Path, build, suffix: str, mode: str) -> None:
    archive = tmp_path / f"gen{suffix}"
    members = {f"gen/sub/g{i}.png": build.png_bytes(gray(10 * i)) for i in range(3)}
    members["gen/notes.txt"] = b"hello"
    members["gen/bad.png"] = b"nope"
    members["../../escape.png"] = build.png_bytes(gray(1))
    with _tar(archive, members, mode) as tf:
        sym = tarfile.TarInfo("gen/link.png")
        sym.type, sym.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tf.addfile(sym)
        dev = tarfile.TarInfo("gen/dev.png")
        dev.type = tarfile.CHRTYPE
        tf.addfile(dev)

    s = load_images(archive, 4)

    assert s.ids == ["sub/g0", "sub/g1", "sub/g2"]
    assert [int(img[0, 0]) for img in s.images] == [0, 10, 20]
    got = reasons(s)
    assert set(got) == {"gen/bad.png", "../../escape.png", "gen/link.png", "gen/dev.png"}
    assert "unsafe" in got["../../escape.png"] and "link" in got["gen/link.png"]


def test_truncated_tar_keeps_what_was_read(tmp_path: Path, build) -> None:
    archive = tmp_path / "cut.tar"
    members = {
        f"p{i}.png": build.png_bytes(np.random.default_rng(i).integers(0, 255, (64, 64), np.uint8))
        for i in range(4)
    }
    _tar(archive, members, "w").close()
    data = archive.read_bytes()
    archive.write_bytes(data[: len(data) // 2 + 1000])  # cut inside the fourth member
    s = load_images(archive, 8)
    assert s.ids == ["p0", "p1", "p2"]
    assert [r.name for r in s.rejected] == ["cut.tar"] and "truncated" in s.rejected[0].reason


def test_many_small_pngs_decode_fast(tmp_path: Path, build, rng: np.random.Generator) -> None:
    n = 4000
    blobs = [build.png_bytes(rng.integers(0, 255, (32, 32), dtype=np.uint8)) for _ in range(64)]
    archive = tmp_path / "many.zip"
    _zip(archive, {f"img_{i:05d}.png": blobs[i % 64] for i in range(n)})
    start = time.perf_counter()
    s = load_images(archive, 32)
    elapsed = time.perf_counter() - start
    assert s.images.shape == (n, 32, 32)
    assert s.ids[0] == "img_00000" and s.ids[-1] == f"img_{n - 1:05d}"
    assert elapsed < 8.0, f"decoding {n} PNGs took {elapsed:.1f}s"


# --- the API's archive reader and limits, hostile inputs (issue 14) -----------------------------------


def test_archives_are_read_with_the_apis_reader_and_limits(tmp_path: Path, build) -> None:
    """One reader, one set of limits: the CLI's refusals read word for word as the API's."""
    from synthaudit.models.archives import ArchiveLimits

    members = {f"m{i}.png": build.png_bytes(gray(i)) for i in range(6)}
    archive = _zip(tmp_path / "set.zip", members)
    s = load_images(archive, 4, limits=ArchiveLimits(max_members=3))
    assert s.ids == ["m0", "m1", "m2"]
    assert reasons(s) == {"set.zip": "more than 3 archive members in the upload; the rest was skipped"}
    two = len(members["m0.png"]) + len(members["m1.png"])
    s = load_images(archive, 4, limits=ArchiveLimits(max_extracted_bytes=two))
    assert s.ids == ["m0", "m1"]
    assert reasons(s) == {"set.zip": f"the upload unpacks to more than {two} bytes; the rest was skipped"}
    small = max(len(d) for d in members.values())
    members["big.png"] = build.png_bytes(np.random.default_rng(0).integers(0, 255, (64, 64), np.uint8))
    s = load_images(_zip(tmp_path / "big.zip", members), 4, limits=ArchiveLimits(max_member_bytes=small))
    assert len(s.ids) == 6 and reasons(s) == {"big.png": f"file larger than {small} bytes"}


def test_the_cli_reads_bz2_and_xz_tars(tmp_path: Path, build) -> None:
    for suffix, mode in ((".tar.bz2", "w:bz2"), (".tar.xz", "w:xz")):
        _tar(tmp_path / f"g{suffix}", {"g/a.png": build.png_bytes(gray(3))}, mode).close()
        assert load_images(tmp_path / f"g{suffix}", 4).ids == ["a"]


def _hostile(tmp_path: Path, kind: str) -> tuple[Path, dict]:
    """A hostile source for the CLI and the limits it is read under (the defaults, unless too slow)."""
    import hostile_inputs as h

    from synthaudit.models.archives import ArchiveLimits

    if kind in ("gnu-long-name", "pax"):
        data, name = (
            h.long_header_tar_gz(b"L" if kind == "gnu-long-name" else b"x", 512 * h.MIB),
            "long.tar.gz",
        )
    elif kind == "directories":
        data, name = h.directory_flood_tar_gz(1_000_000), "dirs.tar.gz"
    elif kind == "lying-zip":  # 20,000 members: the same reading as the API's 200,000, ten times faster
        path = tmp_path / "lying.zip"
        path.write_bytes(h.lying_zip(1_000_000))
        return path, {"limits": ArchiveLimits(max_members=20_000)}
    elif kind == "deflated-dicom":
        data, name = h.deflated_dicom(512 * h.MIB), "deflated.dcm"
    elif kind.startswith("nifti-"):
        data, name = {
            "nifti-lying": (h.lying_nifti(), "lying.nii.gz"),
            "nifti-datatype": (h.huge_datatype_nifti(), "complex.nii"),
            "nifti-truncated": (h.truncated_nifti(), "cut.nii"),
            "nifti-4d": (h.four_d_nifti(), "frames.nii.gz"),
            "nifti-bomb": (h.gzip_bomb_nifti(), "bomb.nii.gz"),
        }[kind]
    else:
        data, name = h.zip_of_raw([h.corrupt_deflate_member(), h.corrupt_lzma_member()]), "corrupt.zip"
    path = tmp_path / name
    path.write_bytes(data)
    return path, {}


@pytest.mark.slow
@pytest.mark.parametrize(
    "kind",
    [
        "gnu-long-name",
        "pax",
        "directories",
        "lying-zip",
        "deflated-dicom",
        "corrupt-members",
        "nifti-lying",
        "nifti-datatype",
        "nifti-truncated",
        "nifti-4d",
        "nifti-bomb",
    ],
)
def test_hostile_sources_fail_cleanly_in_bounded_memory(tmp_path: Path, proc_tools, kind: str) -> None:
    """#2 #3 #5 #6 #14 through the CLI's loader: a one-line error (EmptySetError), never more than a
    few MiB of memory (before: +1 GiB, +1.5 GiB, +500 MiB, tarfile's headers, zlib.error)."""
    import os

    path, kwargs = _hostile(tmp_path, kind)
    with proc_tools.memory_rise(os.getpid()) as rise:
        with pytest.raises(EmptySetError, match=f"no readable images in {path.name}"):
            load_images(path, 8, **kwargs)
    assert rise.mib < 256, f"peak memory rose by {rise.mib:.0f} MiB"


def test_deflated_dicom_is_refused_before_inflating(build) -> None:
    import hostile_inputs as h

    with pytest.raises(ImageReadError, match="deflated DICOM"):
        decode_image(h.deflated_dicom(1024), "d.dcm")


@pytest.mark.parametrize("preamble", [True, False])
def test_one_dicom_size_check_with_or_without_the_preamble(preamble: bool) -> None:
    """#4: the frames count everywhere; a force-read .dcm is checked as a DICM file is."""
    import hostile_inputs as h

    data = h.rle_multiframe_dicom(64, 48, 5, preamble=preamble)
    assert decode_image(data, "ct.dcm").shape == (64, 48)  # the middle frame
    with pytest.raises(ImageReadError) as err:
        decode_image(data, "ct.dcm", max_pixels=10_000)
    assert err.value.reason == "image too large (48x64 pixels x 5 frame(s); limit 10000)"


def test_the_decoded_bytes_are_limited_too() -> None:
    from pydicom.dataset import Dataset

    from synthaudit.models.dicom import DicomRejected, check_image_size

    ds = Dataset()
    ds.Rows, ds.Columns, ds.SamplesPerPixel, ds.BitsAllocated = 50, 50, 3, 32  # 2,500 px, 30,000 bytes
    check_image_size(ds, 10_000)
    with pytest.raises(DicomRejected, match="30000 bytes of pixel data; limit 20000"):
        check_image_size(ds, 5_000)
    ds.NumberOfFrames = -3
    with pytest.raises(DicomRejected, match="invalid NumberOfFrames"):
        check_image_size(ds, 10_000)
