"""The paired reference check (models/reference_pairs.py) by simulation: slice stacks whose neighbouring
slices are near-duplicates, too few stacks for the classifier test. Its level on random slice-level
hold-outs (with used stacks the reference never reaches), a control that breaks the level, its power."""

from __future__ import annotations

import math

import numpy as np
import pytest
from synthetic_sets import slice_stack

from synthaudit.models import reference_check as rc
from synthaudit.models.reference_pairs import MIN_PAIRS, greedy_pairs, paired_differences, sign_flip_test

SIMS = 200
LEVEL = 0.05
SLICES = 60
SIDE = 32


def _limit(level: float, sims: int) -> float:
    return level + 3.0 * math.sqrt(level * (1 - level) / sims)


def _stacks(seed: int, stacks: int = 6, not_used: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images in [0, 1], reference mask, stack per image): a seeded 40 % of the slices of the first
    `not_used` stacks is the reference; every slice of the other stacks is a candidate (the used ones)."""
    rng = np.random.default_rng(seed)
    images = np.concatenate([slice_stack(rng, SLICES, SIDE) for _ in range(stacks)])
    images = np.clip(images + 0.01 * rng.normal(size=images.shape), 0, 1)
    stack = np.repeat(np.arange(stacks), SLICES)
    pool = np.flatnonzero(stack < not_used)
    ref = np.zeros(len(images), dtype=bool)
    ref[rng.choice(pool, int(0.4 * pool.size), replace=False)] = True
    return images, ref, stack


def _u8(x: np.ndarray) -> np.ndarray:
    return (np.clip(x, 0, 1) * 255).astype(np.uint8)


def test_sign_flip_test_holds_its_level_on_symmetric_differences() -> None:
    rng = np.random.default_rng(0)
    rejections = 0
    for seed in range(SIMS):
        # skewed, correlated features, each pair's sign a coin toss: symmetric about zero
        d = (rng.exponential(size=(40, 1)) + rng.normal(size=(40, 10))) * rng.choice(
            [-1.0, 1.0], size=(40, 1)
        )
        p = sign_flip_test(d, flips=999, seed=seed).p_value
        assert p is not None
        rejections += p <= LEVEL
    assert rejections / SIMS <= _limit(LEVEL, SIMS)
    assert sign_flip_test(np.ones((MIN_PAIRS - 1, 3))).p_value is None


def test_pairs_are_a_matching_formed_without_the_labels() -> None:
    images, ref, _ = _stacks(1)
    nb = rc.thumbnail_neighbours(_u8(images), ranks=True)
    pairs = greedy_pairs(nb.index, nb.cosine, rc.NEAR_DUPLICATE_COSINE)
    assert pairs.size and np.unique(pairs).size == pairs.size  # no image in two pairs
    d = paired_differences(np.arange(len(images), dtype=float)[:, None], pairs, ref)
    assert len(d) == int((ref[pairs[:, 0]] != ref[pairs[:, 1]]).sum())  # only pairs across the reference


@pytest.mark.slow
def test_check_holds_its_level_on_slice_level_holdouts_of_correlated_stacks() -> None:
    """Six stacks form about six units, mostly too few for the classifier test: the paired test decides. The
    control: the classifier test with every slice its own unit fires far above its level here (it learns
    which stacks the reference never reaches)."""
    rejections, made, naive = 0, 0, 0
    for seed in range(SIMS):
        images, ref, _ = _stacks(seed)
        result, _ = rc.check_reference(_u8(images), ref, seed=seed)
        if result.p_value is not None:
            made += 1
            rejections += result.p_value <= LEVEL
        if seed < 40:
            feats = rc.check_features(_u8(images))
            _, p_naive = rc.split_test(feats, ref, np.arange(len(ref)), seed=seed)
            naive += p_naive <= LEVEL
    assert made >= 0.9 * SIMS
    assert rejections / made <= _limit(LEVEL, made)
    assert naive / 40 > 0.5


def test_check_catches_an_intensity_change_of_the_reference_on_correlated_stacks() -> None:
    caught = 0
    for seed in range(20):
        images, ref, _ = _stacks(100 + seed)
        images[ref] = images[ref] ** 1.3  # another scanner's contrast
        result, _ = rc.check_reference(_u8(images), ref, seed=seed)
        caught += result.passed is False
    assert caught >= 18
