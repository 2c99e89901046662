"""Per-image registration (models/registration.py) and its evidence (models/registered_score.py,
models/stages/register.py): known transforms recovered, a sparse leak found, the null left alone."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from synthetic_sets import textured_image

from synthaudit.models.alignment import warp
from synthaudit.models.config import AuditConfig
from synthaudit.models.index import search
from synthaudit.models.registered_score import MARGIN, RegisteredEvidence, registered_evidence
from synthaudit.models.registration import (
    FINE_REG_SIDE,
    REG_SIDE,
    prepare,
    register_pairs,
    registration_side,
    whitened_descriptors,
)
from synthaudit.models.report import render_report
from synthaudit.models.stages import AuditInputs, run_audit
from synthaudit.models.stages.register import lift_scores


def _scene(rng: np.random.Generator, side: int) -> np.ndarray:
    """A smooth random scene with a few blobs: something a turn, a rescaling and a shift visibly move."""
    yy, xx = np.mgrid[0:side, 0:side] / side
    img = np.zeros((side, side))
    for _ in range(6):
        cx, cy, r = rng.uniform(0.25, 0.75), rng.uniform(0.25, 0.75), rng.uniform(0.05, 0.15)
        img += rng.uniform(0.3, 1.0) * np.exp(-((xx - cx) ** 2 + (yy - cy) ** 2) / (2 * r**2))
    img += 0.15 * rng.standard_normal((side, side))
    img -= img.min()
    return (255 * img / img.max()).astype(np.uint8)


def _transforms(rng: np.random.Generator, n: int) -> np.ndarray:
    """(dx, dy, angle, zoom) drawn up to 2.5 px of 32, 8 degrees, 8 %."""
    return np.stack(
        [
            rng.uniform(-2.5, 2.5, n),
            rng.uniform(-2.5, 2.5, n),
            rng.uniform(-8, 8, n),
            rng.uniform(0.92, 1.08, n),
        ],
        1,
    )


def test_registration_recovers_known_turns_rescalings_and_shifts() -> None:
    rng = np.random.default_rng(0)
    real = np.stack([_scene(rng, 32) for _ in range(60)])
    truth = _transforms(rng, len(real))
    moved = np.stack([warp(real[i : i + 1], *truth[i])[0] for i in range(len(real))])
    rp, mp = prepare(real), prepare(moved)
    pairs = np.stack([np.arange(len(real))] * 2, 1)
    reg = register_pairs(mp, rp, pairs, image_side=32)
    err = np.abs(np.stack([reg.dx, reg.dy, reg.angle, reg.zoom], 1) - truth)
    # stated tolerances: 0.5 px, 1 degree, 2 % for 9 pairs in 10; the fit itself near perfect
    assert (err[:, 0] < 0.5).mean() >= 0.9 and (err[:, 1] < 0.5).mean() >= 0.9
    assert (err[:, 2] < 1.0).mean() >= 0.9 and (err[:, 3] < 0.02).mean() >= 0.9
    assert np.median(reg.ncc) > 0.97
    unrelated = register_pairs(mp, rp, np.c_[pairs[:, 0], np.roll(pairs[:, 1], 7)], 32)
    assert np.percentile(unrelated.ncc, 90) < np.percentile(reg.ncc, 10)  # no unrelated pair fits like a copy


def test_the_descriptor_shortlists_the_source_of_a_warped_copy() -> None:
    rng = np.random.default_rng(1)
    real = np.stack([_scene(rng, 32) for _ in range(300)])
    truth = _transforms(rng, 50)
    copies = np.stack([warp(real[i : i + 1], *truth[i])[0] for i in range(50)])
    dr, dc = whitened_descriptors(prepare(real).descriptor, prepare(copies).descriptor)
    _, idx = search(dc, dr, 8, metric="cosine", device="cpu")
    assert (idx == np.arange(50)[:, None]).any(axis=1).mean() >= 0.9


def _cpu_search(*args: object, **kwargs: object) -> tuple[np.ndarray, np.ndarray]:
    return search(*args, device="cpu", **kwargs)  # type: ignore[arg-type]


def test_a_sparse_leak_of_three_warped_copies_among_a_thousand_novel_images_is_found() -> None:
    rng = np.random.default_rng(2)
    base = _scene(rng, 32)
    real = np.stack([textured_image(rng, 32, base) for _ in range(200)])
    novel = np.stack([textured_image(rng, 32, base) for _ in range(997)])
    truth = _transforms(rng, 3)
    copies = np.stack([warp(real[i : i + 1], *truth[i])[0] for i in range(3)])
    evidence = registered_evidence(real, np.concatenate([copies, novel]), _cpu_search)
    strong = np.flatnonzero(evidence.strong())
    assert set(strong) == {0, 1, 2}  # the three sources, and nothing else
    assert list(evidence.generated[:3]) == [0, 1, 2]
    np.testing.assert_allclose(evidence.angle[:3], truth[:, 2], atol=1.0)


def test_no_real_image_has_registered_evidence_when_nothing_was_copied() -> None:
    rng = np.random.default_rng(3)
    base = _scene(rng, 32)
    real = np.stack([textured_image(rng, 32, base) for _ in range(200)])
    generated = np.stack([textured_image(rng, 32, base) for _ in range(400)])
    evidence = registered_evidence(real, generated, _cpu_search)
    assert not evidence.strong().any()
    assert np.nanmax(evidence.margin) < MARGIN


def test_lifting_places_strong_evidence_first_and_leaves_other_scores_bit_for_bit() -> None:
    scores = np.array([0.2, 0.9, 0.5, 0.1])
    n = len(scores)
    none = RegisteredEvidence(
        margin=np.array([0.3, -np.inf, 0.9, 0.0]),
        ncc=np.zeros(n),
        baseline=np.zeros(n),
        generated=np.zeros(n, dtype=np.int64),
        angle=np.zeros(n),
        zoom=np.ones(n),
        dx=np.zeros(n),
        dy=np.zeros(n),
    )
    assert lift_scores(scores, none).tobytes() == scores.tobytes()
    assert lift_scores(scores, None).tobytes() == scores.tobytes()
    some = RegisteredEvidence(**{**none.__dict__, "margin": np.array([1.5, -np.inf, 2.0, 0.0])})
    lifted = lift_scores(scores, some)
    assert list(np.argsort(-lifted)) == [2, 0, 1, 3]
    assert lifted[1] == scores[1] and lifted[3] == scores[3]


@pytest.mark.parametrize("alignment", ["auto", "off"])
def test_the_default_audit_flags_warped_copies_through_registration(tmp_path: Path, alignment: str) -> None:
    rng = np.random.default_rng(4)
    base = _scene(rng, 32)
    real = [textured_image(rng, 32, base) for _ in range(60)]
    truth = _transforms(rng, 5)
    generated = [warp(real[i][None], *truth[i])[0] for i in range(5)]
    generated += [textured_image(rng, 32, base) for _ in range(60)]
    for name, images in (("real", real), ("generated", generated)):
        (tmp_path / name).mkdir()
        for i, img in enumerate(images):
            Image.fromarray(img).save(tmp_path / name / f"{name[0]}{i:03d}.png")
    config = AuditConfig(image_size=32, batch_size=32, alignment=alignment)
    outcome = run_audit(AuditInputs(tmp_path / "real", tmp_path / "generated"), config, tmp_path / "work")
    top = [r.id for r in sorted(outcome.rows, key=lambda r: -r.score)[:5]]
    record = json.loads((tmp_path / "work" / "alignment.json").read_text())
    copies = outcome.metrics["registered_copies"]
    if alignment == "auto":
        assert sorted(top) == [f"r{i:03d}" for i in range(5)]
        assert record["registration"]["strong"] == 5
        assert sorted(c["id"] for c in copies) == sorted(top)
        by_id = {c["id"]: c for c in copies}
        for i in range(5):  # the transform found is the one applied
            assert abs(by_id[f"r{i:03d}"]["angle"] - truth[i, 2]) < 1.0
        html = render_report(tmp_path / "work")
        assert html.count("registered copy: NCC") == 5
        assert "5 real images have a registered copy" in html
    else:
        assert "registration" not in record and not (tmp_path / "work" / "registration.npz").exists()
        assert copies is None


def test_blank_and_saturated_images_never_count_as_registered_copies() -> None:
    """Constant images have no structure to register: no NaN, no margin that counts (a black generated image
    is not a copy of a black real one by registration; identical files are the default's business)."""
    rng = np.random.default_rng(5)
    noise = rng.integers(0, 256, (20, 32, 32)).astype(np.uint8)
    real = np.concatenate([np.zeros((20, 32, 32), np.uint8), np.full((5, 32, 32), 255, np.uint8), noise])
    generated = np.concatenate(
        [np.zeros((30, 32, 32), np.uint8), rng.integers(0, 256, (20, 32, 32)).astype(np.uint8)]
    )
    evidence = registered_evidence(real, generated, _cpu_search)
    assert not np.isnan(evidence.margin).any() and not evidence.strong().any()


def test_the_registration_side_follows_the_files_detail_and_the_budget() -> None:
    assert registration_side(2_309, 64, source_side=64) == FINE_REG_SIDE  # small audit of 64-px slices
    assert registration_side(2_309, 64, source_side=256) == FINE_REG_SIDE
    assert registration_side(10_000, 64, source_side=256) == REG_SIDE  # the challenge's size: the budget
    assert registration_side(2_309, 64, source_side=28) == REG_SIDE  # upsampled files carry no finer detail
    assert registration_side(2_309, 64, source_side=48) == 48
    assert registration_side(2_309, 24, source_side=64) == 24  # never above the decoded side
    assert registration_side(2_309, 64) == REG_SIDE  # sources unknown: the coarse side


def _twins_and_copies(rng: np.random.Generator, side: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """30 pairs of real twins (one scene, two patterns of detail that a 2x2 average removes: adjacent slices
    alike at half the side), 10 copies of the first of 10 pairs moved by whole pixels, 50 novel scenes."""

    def detail() -> np.ndarray:
        return np.kron(rng.standard_normal((side // 2, side // 2)), np.array([[1, -1], [-1, 1]]))

    real = []
    for _ in range(30):
        scene = 0.7 * _scene(rng, side).astype(float) + 30
        real += [np.clip(scene + 30 * detail(), 0, 255).astype(np.uint8) for _ in range(2)]
    moves = rng.integers(-4, 5, (10, 2))
    copies = [np.roll(real[2 * i], tuple(int(m) for m in moves[i]), axis=(0, 1)) for i in range(10)]
    return np.stack(real), np.stack(copies + [_scene(rng, side) for _ in range(50)])


def test_a_copy_of_one_of_two_twins_alike_at_the_coarse_side_counts_only_at_the_fine_side() -> None:
    real, generated = _twins_and_copies(np.random.default_rng(7))
    coarse = registered_evidence(real, generated, search, side=REG_SIDE).strong()
    fine = registered_evidence(real, generated, search, side=FINE_REG_SIDE).strong()
    assert coarse.sum() == 0  # at 32 px the twins are one image: no margin over the runner-up
    assert list(np.flatnonzero(fine)) == list(range(0, 20, 2))  # each copy's source, not its twin


@pytest.mark.parametrize(("file_side", "expected"), [(128, FINE_REG_SIDE), (28, REG_SIDE)])
def test_the_audit_registers_at_the_side_its_files_afford(
    tmp_path: Path, file_side: int, expected: int
) -> None:
    rng = np.random.default_rng(8)
    for name, count in (("real", 24), ("generated", 24)):
        (tmp_path / name).mkdir()
        for i in range(count):
            Image.fromarray(_scene(rng, file_side)).save(tmp_path / name / f"{name[0]}{i:03d}.png")
    config = AuditConfig(image_size=64, batch_size=32)
    run_audit(AuditInputs(tmp_path / "real", tmp_path / "generated"), config, tmp_path / "work")
    record = json.loads((tmp_path / "work" / "alignment.json").read_text())
    assert record["registration"]["side"] == expected
