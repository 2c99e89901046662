"""NIfTI volumes (models/nifti.py): slices, orientation, axes, the intensity rule, empty slices, ids, and
the hostile headers refused before any voxel is read."""

from __future__ import annotations

import gzip
import zipfile
from pathlib import Path

import hostile_inputs as h
import numpy as np
import pytest
from nifti_sets import ct_volume, lps_twin, mri_volume, nifti_bytes

from synthaudit.models.config import AuditConfig
from synthaudit.models.io import EmptySetError, ImageReadError, decode_image, decode_slices, load_images
from synthaudit.models.nifti import (
    BACKGROUND_MARGIN,
    CT_WINDOW,
    KEEP_FRACTION,
    NiftiRejected,
    check_header,
    read_volume,
)

BUDGET = 64_000_000


def slices(data: bytes, axis: str = "axial", name: str = "v.nii.gz") -> dict[str, np.ndarray]:
    return dict(read_volume(data, name, BUDGET, axis))


def test_a_ct_volume_becomes_its_non_empty_axial_slices_with_stable_ids() -> None:
    vol = ct_volume(1, shape=(24, 20, 16), empty_slices=2)
    out = slices(nifti_bytes(vol))
    assert list(out) == [f"_z{k:03d}" for k in range(2, 14)]  # z000, z001, z014, z015 are air only
    assert all(s.shape == (20, 24) and s.dtype == np.uint8 for s in out.values())  # rows: y, columns: x
    raw = slices(nifti_bytes(vol, gz=False), name="v.nii")  # a .nii reads the same
    assert raw.keys() == out.keys() and all(np.array_equal(out[k], raw[k]) for k in out)


def test_the_ct_window_maps_hounsfield_units_and_mri_uses_percentiles() -> None:
    level, width = CT_WINDOW
    vol = ct_volume(2)
    vol[:, :, 8] = -1000
    vol[2:22, 2:18, 8] = np.array([-160, 40, 240, 1000], dtype=np.int16).repeat(80).reshape(20, 16)
    plane = slices(nifti_bytes(vol))["_z008"][::-1].T  # back to [x, y]
    assert level - width / 2 == -160 and level + width / 2 == 240
    assert set(np.unique(plane[2:22, 2:18])) == {0, 128, 255}  # -160 -> 0, 40 -> 128, 240 and 1000 -> 255
    # an MRI-like volume (no value below -500 HU): its 0.5 and 99.5 percentiles span 0 .. 255
    mri = mri_volume(2)
    out = np.stack(list(dict(read_volume(nifti_bytes(mri), "m.nii.gz", BUDGET, "axial")).values()))
    assert out.max() == 255 and out.min() == 0
    scaled = slices(nifti_bytes(mri * 7 + 3))  # a linear change of units changes nothing
    assert all(np.array_equal(a, b) for a, b in zip(scaled.values(), slices(nifti_bytes(mri)).values()))


def test_scaling_slope_and_intercept_are_applied_before_the_rule() -> None:
    """uint16 stored values + scl_inter -1024: Hounsfield units, so the CT window applies."""
    vol = ct_volume(3)
    stored = (vol.astype(np.int32) + 1024).astype(np.uint16)
    as_hu = slices(nifti_bytes(stored, scl_slope=1.0, scl_inter=-1024.0))
    assert all(np.array_equal(a, b) for a, b in zip(as_hu.values(), slices(nifti_bytes(vol)).values()))


def test_a_volume_stored_in_lps_gives_the_slices_of_its_ras_twin() -> None:
    import nibabel as nib

    for make in (ct_volume, mri_volume):
        ras = make(4)
        lps, affine = lps_twin(ras)
        canonical = nib.as_closest_canonical(nib.Nifti1Image(lps, affine))
        assert np.array_equal(np.asarray(canonical.dataobj), ras)  # the twin is what nibabel says
        for axis in ("axial", "coronal", "sagittal"):
            a, b = slices(nifti_bytes(ras), axis), slices(nifti_bytes(lps, affine), axis)
            assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_the_axis_decides_the_planes_and_all_gives_the_three() -> None:
    vol = ct_volume(5, shape=(24, 20, 16), empty_slices=0)
    data = nifti_bytes(vol)
    sagittal, coronal, axial = slices(data, "sagittal"), slices(data, "coronal"), slices(data, "axial")
    assert {k[:2] for k in sagittal} == {"_x"} and {s.shape for s in sagittal.values()} == {(16, 20)}
    assert {k[:2] for k in coronal} == {"_y"} and {s.shape for s in coronal.values()} == {(16, 24)}
    assert {k[:2] for k in axial} == {"_z"} and {s.shape for s in axial.values()} == {(20, 24)}
    assert list(slices(data, "all")) == [*sagittal, *coronal, *axial]
    with pytest.raises(ValueError, match="nifti axis"):
        read_volume(data, "v.nii.gz", BUDGET, "oblique")
    with pytest.raises(ValueError, match="nifti_axis"):
        AuditConfig(nifti_axis="oblique")


def test_nearly_empty_slices_are_dropped_by_the_documented_threshold() -> None:
    vol = np.zeros((20, 20, 6), dtype=np.float32)
    vol[:, :, 1] = 1000  # full
    vol[:4, :5, 2] = 1000  # 20 of 400 pixels: exactly 5 %
    vol[:4, :4, 3] = 1000  # 16 of 400: 4 %, dropped
    vol[:, :, 4] = 3  # faint everywhere: not more than BACKGROUND_MARGIN grey levels above the background
    vol[:, :, 5] = 600
    out = slices(nifti_bytes(vol))
    assert list(out) == ["_z001", "_z002", "_z005"]
    assert KEEP_FRACTION == 0.05 and BACKGROUND_MARGIN == 10
    with pytest.raises(NiftiRejected, match="no slice of the volume"):
        read_volume(nifti_bytes(np.zeros((8, 8, 8), np.float32)), "v.nii.gz", BUDGET)


def test_load_images_reads_volumes_from_folders_and_zips_with_the_same_ids(tmp_path: Path) -> None:
    folder = tmp_path / "vols"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.nii.gz").write_bytes(nifti_bytes(ct_volume(1)))
    (folder / "sub" / "b.nii").write_bytes(nifti_bytes(mri_volume(2), gz=False))
    (folder / "c.png").write_bytes(h_png())
    loaded = load_images(folder, 16)
    assert loaded.ids[:3] == ["a_z002", "a_z003", "a_z004"]
    assert "c" in loaded.ids and "sub/b_z002" in loaded.ids and len(loaded) == 12 + 12 + 1
    with zipfile.ZipFile(tmp_path / "vols.zip", "w") as zf:
        for path in sorted(folder.rglob("*.*")):
            zf.write(path, "set/" + path.relative_to(folder).as_posix())
    zipped = load_images(tmp_path / "vols.zip", 16)
    assert zipped.ids == loaded.ids and np.array_equal(zipped.images, loaded.images)
    coronal = load_images(folder, 16, nifti_axis="coronal")
    assert any(i.startswith("a_y") for i in coronal.ids) and not any(i.startswith("a_z") for i in coronal.ids)


def h_png() -> bytes:
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.arange(256, dtype=np.uint8).reshape(16, 16)).save(buf, format="PNG")
    return buf.getvalue()


def test_decode_image_gives_the_middle_kept_slice_and_slices_the_suffixes() -> None:
    data = nifti_bytes(ct_volume(1))
    kept = decode_slices(data, "v.nii.gz")
    assert np.array_equal(decode_image(data, "v.nii.gz"), kept[len(kept) // 2][1])
    assert [s for s, _ in decode_slices(h_png(), "x.png")] == [""]


HOSTILE = {
    "lying-dimensions": (h.lying_nifti(), "volume too large (30000x30000x30000 voxels; limit 64000000)"),
    "lying-dimensions-raw": (h.lying_nifti(gz=False), "volume too large (30000x30000x30000 voxels"),
    "complex-datatype": (h.huge_datatype_nifti(), "NIfTI datatype complex256 is not accepted"),
    "rgb-datatype": (h.huge_datatype_nifti(128, 24), "NIfTI datatype RGB is not accepted"),
    "unknown-datatype": (h.huge_datatype_nifti(9999, 8), "unknown NIfTI datatype code 9999"),
    "bytes-past-budget": (
        h.nifti_header((1000, 1000, 60), 64, 64) + bytes(64),
        "volume too large (480000000 bytes of voxel data; limit 256000000)",
    ),
    "truncated": (h.truncated_nifti(), "truncated NIfTI file (the header needs 524640 bytes, the file holds"),
    "four-d": (h.four_d_nifti(), "4D NIfTI (16 x 16 x 16 x 50: 50 frames) is not accepted"),
    "zero-dimension": (h.nifti_header((8, 0, 8)) + bytes(64), "invalid NIfTI dimensions (8 x 0 x 8)"),
    "negative-dimension": (h.nifti_header((8, -3, 8)) + bytes(64), "invalid NIfTI dimensions (8 x -3 x 8)"),
    "vox-offset": (h.nifti_header((8, 8, 8), vox_offset=1e12) + bytes(64), "invalid NIfTI vox_offset"),
    "header-pair": (h.nifti_header((8, 8, 8))[:344] + b"ni1\0" + bytes(2000), "a NIfTI header/image pair"),
    "not-nifti": (b"hello" * 100, "not a NIfTI file"),
    "short": (b"\x00" * 100, "not a NIfTI file (shorter than its 348-byte header)"),
    "gzip-bomb": (h.gzip_bomb_nifti(), "no slice of the volume"),  # 1 GiB of zeros: 512 KiB inflated
}


@pytest.mark.parametrize("kind", list(HOSTILE))
def test_hostile_nifti_files_are_refused_with_one_line(kind: str) -> None:
    data, reason = HOSTILE[kind]
    name = "v.nii.gz" if data[:2] == b"\x1f\x8b" else "v.nii"
    with pytest.raises(ImageReadError) as err:
        decode_slices(data, name)
    assert err.value.reason.startswith(reason) and "\n" not in err.value.reason


def test_a_cut_gzip_stream_and_a_misnamed_file_are_refused() -> None:
    noisy = np.random.default_rng(0).integers(0, 1000, (32, 32, 32)).astype(np.int16)
    data = nifti_bytes(noisy)
    with pytest.raises(ImageReadError, match="corrupt or truncated gzip data"):
        decode_slices(data[: len(data) // 2], "v.nii.gz")
    with pytest.raises(ImageReadError, match="not a gzip file"):
        decode_slices(nifti_bytes(noisy, gz=False), "v.nii.gz")


def test_the_header_is_checked_against_the_callers_budget() -> None:
    head = h.nifti_header((100, 100, 10))
    assert check_header(head, 100_000).shape == (100, 100, 10)
    with pytest.raises(NiftiRejected, match="limit 99999"):
        check_header(head, 99_999)


def test_the_gzip_bomb_is_inflated_only_as_far_as_the_header_says() -> None:
    """Bounded inflation: reading the 1 GiB bomb costs what 512 KiB cost (no gzip.decompress)."""
    import time

    start = time.perf_counter()
    with pytest.raises(ImageReadError):
        decode_slices(h.gzip_bomb_nifti(), "bomb.nii.gz")
    assert time.perf_counter() - start < 1.0  # inflating 1 GiB takes seconds
    assert len(gzip.decompress(h.gzip_bomb_nifti(4 * h.MIB))) > 4 * h.MIB  # the bomb is what it says


def test_a_folder_of_only_hostile_volumes_is_one_clear_message(tmp_path: Path) -> None:
    (tmp_path / "lying.nii.gz").write_bytes(h.lying_nifti())
    (tmp_path / "cut.nii").write_bytes(h.truncated_nifti())
    with pytest.raises(EmptySetError) as err:
        load_images(tmp_path, 16)
    message = str(err.value)
    assert message.startswith("no readable images in ") and "\n" not in message
    assert "volume too large" in message and "truncated NIfTI file" in message


def test_a_degenerate_affine_keeps_the_stored_orientation() -> None:
    vol = np.arange(8 * 8 * 4, dtype=np.int16).reshape(8, 8, 4) % 97
    head = bytearray(h.nifti_header((8, 8, 4)))
    head[280:328] = bytes(48)  # srow_x, srow_y, srow_z: all zero
    stored = slices(bytes(head) + vol.tobytes(order="F"), name="v.nii")
    plain = slices(h.nifti_header((8, 8, 4)) + vol.tobytes(order="F"), name="v.nii")
    assert stored.keys() == plain.keys() and all(np.array_equal(stored[k], plain[k]) for k in plain)


def test_header_extensions_before_the_voxels_are_skipped_in_a_gzip_stream() -> None:
    vol = 100 + np.arange(8 * 8 * 4, dtype=np.int16).reshape(8, 8, 4) % 97
    data = h.nifti_header((8, 8, 4), vox_offset=352 + 4096) + bytes(4096) + vol.tobytes(order="F")
    got = slices(gzip.compress(data))
    assert (
        list(got) == ["_z000", "_z001", "_z002", "_z003"] and slices(data, name="v.nii").keys() == got.keys()
    )
    with pytest.raises(ImageReadError, match=r"truncated NIfTI file \(the header needs 4960 bytes"):
        decode_slices(gzip.compress(data[:2000]), "v.nii.gz")
