"""models/reference_overlap.py: the same image in the reference and among the candidates, found on the
decode stage's uint8 cache (same pixels, or a near-duplicate thumbnail), refused or dropped, and counted."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_sets import random_image, textured_image

from synthaudit.models.config import AuditConfig
from synthaudit.models.reference_overlap import (
    NEAR_DUPLICATE_COSINE,
    ReferenceOverlapError,
    find_overlap,
    nearest_cosine,
    read_overlap,
    resolve_overlap,
    thumbnails,
    warnings,
)
from synthaudit.models.stages import AuditInputs
from synthaudit.models.stages.decode import load_decoded, load_reference_mask, run_decode
from synthaudit.models.workdir import WorkDir


def _images(seed: int, n: int, size: int = 64, textured: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    make = textured_image if textured else random_image
    return np.stack([make(rng, size) for _ in range(n)])


def _jpeg(img: np.ndarray, quality: int = 90) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"))


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def test_thumbnails_are_unit_norm_and_flat_images_give_zeros() -> None:
    imgs = _images(0, 5, size=50)  # 50 is no multiple of 16: area weights of any ratio
    imgs[0] = 128
    t = thumbnails(imgs)
    assert t.shape == (5, 256) and t.dtype == np.float32
    assert np.allclose(t[0], 0.0)
    assert np.allclose(np.linalg.norm(t[1:], axis=1), 1.0, atol=1e-5)
    assert np.allclose(thumbnails(np.repeat(imgs[..., None], 3, axis=3)), t, atol=1e-5)  # RGB: averaged


def test_a_reference_that_repeats_candidates_is_found_exactly() -> None:
    real = _images(1, 40)
    reference = np.concatenate([real[[3, 7, 11]], _images(2, 10)])
    overlap, mask = find_overlap(_ids("r", 40), real, _ids("ref", 13), reference)
    assert np.flatnonzero(mask).tolist() == [3, 7, 11]
    assert overlap.duplicates_reference_candidates == 3 and overlap.exact_reference_candidates == 3
    assert overlap.examples == ["r0003", "r0007", "r0011"]
    assert overlap.threshold == NEAR_DUPLICATE_COSINE and overlap.dropped_candidates == 0
    with pytest.raises(ReferenceOverlapError, match=r"^3 real candidate image\(s\) .*r0003, r0007, r0011"):
        resolve_overlap(overlap, mask, _ids("r", 40), drop=False)
    dropped = resolve_overlap(overlap, mask, _ids("r", 40), drop=True)
    assert dropped.dropped_candidates == 3
    assert "dropped 3 candidate(s)" in " ".join(warnings(dropped.to_dict()))


@pytest.mark.parametrize("textured", [False, True])
def test_jpeg_and_noised_copies_are_near_duplicates_and_distinct_images_are_not(textured: bool) -> None:
    real = _images(3, 60, textured=textured)
    rng = np.random.default_rng(4)
    noised = np.clip(real[:10] + rng.normal(0, 2.0, real[:10].shape), 0, 255).round().astype(np.uint8)
    jpegged = np.stack([_jpeg(img) for img in real[10:20]])
    distinct = _images(5, 40, textured=textured)  # the same kind, other images
    reference = np.concatenate([noised, jpegged, distinct])
    overlap, mask = find_overlap(_ids("r", 60), real, _ids("ref", 60), reference)
    assert np.flatnonzero(mask).tolist() == list(range(20))
    assert overlap.exact_reference_candidates == 0
    assert nearest_cosine(thumbnails(real[20:]), thumbnails(distinct)).max() < NEAR_DUPLICATE_COSINE


def test_exact_duplicates_within_each_set_are_counted_not_refused() -> None:
    real = _images(6, 20)
    real[5] = real[2]
    real[9] = real[2]
    reference = _images(7, 8)
    reference[4] = reference[1]
    overlap, mask = find_overlap(_ids("r", 20), real, _ids("ref", 8), reference)
    assert not mask.any()
    assert overlap.duplicates_within_real == 2 and overlap.examples_within_real == ["r0005", "r0009"]
    assert overlap.duplicates_within_reference == 1 and overlap.examples_within_reference == ["ref0004"]
    resolve_overlap(overlap, mask, _ids("r", 20), drop=False)  # no error
    lines = warnings(overlap.to_dict())
    assert lines[0] == "2 image(s) repeat the pixels of an earlier image in the real set: r0005, r0009"
    assert lines[1].startswith("1 image(s) repeat the pixels of an earlier image in the reference: ref0004")


def test_comparison_in_blocks_keeps_the_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    import synthaudit.models.reference_overlap as ro

    real, reference = _images(8, 30), _images(9, 7)
    whole = nearest_cosine(thumbnails(real), thumbnails(reference))
    monkeypatch.setattr(ro, "BLOCK", 4)
    monkeypatch.setattr(ro, "CHUNK", 3)
    assert np.allclose(nearest_cosine(thumbnails(real), thumbnails(reference)), whole)


def _write(folder: Path, images: np.ndarray, ids: list[str]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for image_id, img in zip(ids, images, strict=True):
        Image.fromarray(img).save(folder / f"{image_id}.png")
    return folder


def _folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    real = _images(10, 24, size=32)
    real_dir = _write(tmp_path / "real", real, _ids("r", 24))
    gen_dir = _write(tmp_path / "generated", _images(11, 12, size=32), _ids("g", 12))
    ref_dir = _write(
        tmp_path / "reference", np.concatenate([real[:6], _images(12, 6, size=32)]), _ids("q", 12)
    )
    return real_dir, gen_dir, ref_dir


def test_decode_refuses_candidates_that_repeat_the_reference(tmp_path: Path) -> None:
    real, generated, reference = _folders(tmp_path)
    config = AuditConfig(image_size=32)
    with pytest.raises(ReferenceOverlapError, match=r"^6 real candidate image\(s\)"):
        run_decode(
            tmp_path / "work", AuditInputs(real, generated, reference=reference), config, lambda f: None
        )
    assert not WorkDir(tmp_path / "work").decoded.exists()  # failed before any later stage could run


def test_decode_drops_them_with_the_option_and_records_it(tmp_path: Path) -> None:
    real, generated, reference = _folders(tmp_path)
    workdir = tmp_path / "work"
    workdir.mkdir()
    config = AuditConfig(image_size=32, drop_reference_duplicates=True)
    run_decode(workdir, AuditInputs(real, generated, reference=reference), config, lambda f: None)
    pool, _ = load_decoded(workdir)
    from_reference = load_reference_mask(workdir)
    candidates = [i for i, ref in zip(pool.ids, from_reference, strict=True) if not ref]
    assert candidates == _ids("r", 24)[6:]
    assert int(from_reference.sum()) == 12
    overlap = read_overlap(workdir)
    assert overlap is not None
    assert overlap["dropped_candidates"] == 6 and overlap["duplicates_reference_candidates"] == 6
    assert overlap["examples"] == _ids("r", 5)


def test_decode_refuses_label_ids_not_among_the_real_images(tmp_path: Path) -> None:
    real, generated, _ = _folders(tmp_path)
    labels = {"r0001": 0, "nope1": 0, "nope2": 1}
    with pytest.raises(ValueError, match=r"^labels: 2 id\(s\) are not among the real images: nope1, nope2$"):
        run_decode(
            tmp_path / "w", AuditInputs(real, generated, labels), AuditConfig(image_size=32), lambda f: None
        )


def test_read_overlap_of_an_older_work_folder_is_none(tmp_path: Path) -> None:
    assert read_overlap(tmp_path) is None


def _thin_slices(n: int = 120, side: int = 64) -> np.ndarray:
    """Thin slices through one smooth volume: neighbours lie above the cosine threshold."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[0:side, 0:side] / side
    blobs = rng.uniform(0.1, 0.9, size=(10, 4))
    out = []
    for k in range(n):
        z = k / (3.0 * n)
        img = sum(
            np.exp(
                -((xx - b[0]) ** 2 + (yy - b[1]) ** 2 + (z - b[2] / 10) ** 2) / (2 * (0.05 + 0.1 * b[3]) ** 2)
            )
            for b in blobs
        )
        out.append(img)
    stack = np.stack(out)
    return (stack / stack.max() * 255).astype(np.uint8)


def test_a_random_split_of_thin_slices_is_not_refused_but_a_copy_among_them_is() -> None:
    slices = _thin_slices()
    rng = np.random.default_rng(8)
    ref = np.zeros(len(slices), dtype=bool)
    ref[rng.choice(len(slices), 48, replace=False)] = True
    ids = [f"s{i:03d}" for i in range(len(slices))]
    real_ids = [i for i, r in zip(ids, ref, strict=True) if not r]
    ref_ids = [i for i, r in zip(ids, ref, strict=True) if r]
    real, reference = slices[~ref], slices[ref]
    close = nearest_cosine(thumbnails(real), thumbnails(reference)) >= NEAR_DUPLICATE_COSINE
    assert close.sum() > 10  # neighbours across the split lie above the cosine threshold ...
    overlap, mask = find_overlap(real_ids, real, ref_ids, reference)
    assert not mask.any() and overlap.duplicates_reference_candidates == 0  # ... but are not copies
    copy = np.clip(reference[5].astype(int) + rng.integers(-1, 2, reference[5].shape), 0, 255).astype(
        np.uint8
    )
    _, mask = find_overlap([*real_ids, "copy"], np.concatenate([real, copy[None]]), ref_ids, reference)
    assert mask.tolist() == [False] * len(real_ids) + [True]
