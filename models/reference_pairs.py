"""The paired reference check: near-duplicate pairs that straddle the reference / candidate line.

The classifier test of models/reference_check.py counts chains of near-duplicates (the neighbouring
slices of a volume) as one unit each, so a few slice stacks give it too few units to test anything.
Those chains hold evidence of their own. Pair the images by content (a greedy matching of the
near-duplicate links of the per-image-normalised thumbnails, most similar first), without looking at
which set an image is in. When the reference is drawn like the
candidates, in a pair with one reference image and one candidate which of the two is the reference is
a coin toss, so their acquisition statistics (intensity percentiles, sharpness, noise spectrum) differ
with a random sign. A reference from another scanner, or with a bias field, moves every pair the same
way. The test is a sign-flip permutation test of a quadratic statistic of the paired differences,
exact under an image-level random split of the chains (checked by simulation in
tests/models/test_reference_pairs.py); pairs are disjoint, so their signs are independent under it.

What it cannot see: a different patient mix (pairs match content; the classifier test sees that), and
a reference of whole volumes where the only cross-line pairs join two different volumes (their
differences then share a sign within each pair of volumes, and few volumes can look like a shift).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

MIN_PAIRS = 20  # fewer straddling pairs than this: the paired test is not made
FLIPS = 4999  # random sign flips of the permutation p-value (smallest p: 1 / 5000)
FLIP_CHUNK = 500


@dataclass(frozen=True)
class PairedTest:
    """The paired test over straddling pairs: p is None when fewer than MIN_PAIRS were found."""

    pairs: int
    statistic: float | None  # root-mean-square sign-flip z score over the features (about 1 when alike)
    p_value: float | None


def greedy_pairs(index: np.ndarray, cosine: np.ndarray, threshold: float) -> np.ndarray:
    """[P, 2] disjoint index pairs from the near-duplicate links (each image's nearest others `index`
    [N, k] with their `cosine`), the most similar first, each image in at most one pair: a matching,
    formed without the reference labels."""
    rows, cols = np.nonzero(np.asarray(cosine) >= threshold)
    if rows.size == 0:
        return np.zeros((0, 2), dtype=np.int64)
    order = np.argsort(-np.asarray(cosine)[rows, cols], kind="stable")
    used = np.zeros(len(index), dtype=bool)
    chosen = []
    for i, j in zip(rows[order].tolist(), np.asarray(index)[rows, cols][order].tolist(), strict=True):
        if not used[i] and not used[j]:
            used[i] = used[j] = True
            chosen.append((min(i, j), max(i, j)))
    return np.array(chosen, dtype=np.int64).reshape(-1, 2)


def paired_differences(features: np.ndarray, pairs: np.ndarray, is_reference: np.ndarray) -> np.ndarray:
    """Reference minus candidate features of each straddling pair: [P', D] (pairs inside one set dropped)."""
    ref = np.asarray(is_reference, dtype=bool)
    straddling = pairs[ref[pairs[:, 0]] != ref[pairs[:, 1]]]
    a, b = straddling[:, 0], straddling[:, 1]
    sign = np.where(ref[a], 1.0, -1.0)[:, None]
    return sign * (np.asarray(features, dtype=np.float64)[a] - features[b])


def sign_flip_test(diffs: np.ndarray, flips: int = FLIPS, seed: int = 0) -> PairedTest:
    """Sign-flip permutation test of H0 "each pair's difference is symmetric about zero".

    Statistic: sum over features of (sum of signed differences)^2 / (sum of squared differences), a
    quadratic form whose denominators no flip changes, so the permutation distribution is exact."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.shape[0] < MIN_PAIRS:
        return PairedTest(pairs=int(d.shape[0]), statistic=None, p_value=None)
    scale = np.sqrt((d**2).sum(axis=0))
    keep = scale > 1e-12
    z = d[:, keep] / scale[keep]
    observed = float((z.sum(axis=0) ** 2).sum())
    rng = np.random.default_rng(seed)
    exceed = 0
    for start in range(0, flips, FLIP_CHUNK):
        signs = rng.choice(np.array([-1.0, 1.0]), size=(min(FLIP_CHUNK, flips - start), z.shape[0]))
        exceed += int((((signs @ z) ** 2).sum(axis=1) >= observed - 1e-12).sum())
    p = (1 + exceed) / (flips + 1)
    return PairedTest(pairs=int(d.shape[0]), statistic=float(np.sqrt(observed / z.shape[1])), p_value=p)
