"""The same image in the reference and among the candidates: found, refused or dropped, and counted.

A reference image that is also a candidate finds itself as its nearest real neighbour, so both scores
collapse and the calibrated verdict reads the duplicates as leakage. This module finds, on the decode
stage's uint8 cache (pure numpy, bounded memory):

- exact duplicates: the same pixels after decoding (sha256 of the decoded image; same bytes included);
- near-duplicates: per-image-normalised 16x16 thumbnails with cosine >= NEAR_DUPLICATE_COSINE, measured
  in docs/design.md (record 11): re-encoded, JPEG'd or lightly noised copies lie above it, distinct
  Fashion-MNIST images below it; and closer to the reference image than to anything else by a wide margin
  (`SPACING_RATIO`): thin neighbouring slices of a volume can lie above the cosine, but then so does the
  slice on the other side, while a copy stands out against its own neighbours.

Candidates that repeat a reference image are refused (`ReferenceOverlapError`) unless the audit asks to
drop them (`drop_reference_duplicates`). Exact duplicates within the real set or within the reference are
only counted. What was found is the work folder's `overlap.json` (`read_overlap`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from synthaudit.models.workdir import WorkDir

THUMB_SIDE = 16
NEAR_DUPLICATE_COSINE = 0.9995  # measured: docs/design.md, record 11
SPACING_RATIO = 0.2  # a copy's cosine gap to the reference is at most this share of its next gap (record 11)
CHUNK = 128  # images turned into thumbnails at a time
BLOCK = 1024  # candidate thumbnails compared with the reference at a time
EXAMPLES = 5  # ids named in a message or the artifact


class ReferenceOverlapError(ValueError):
    """Candidates that repeat reference images, without the option to drop them."""

    def __init__(self, ids: list[str]) -> None:
        super().__init__(
            f"{len(ids)} real candidate image(s) are also in the reference (same or near-identical pixels): "
            f"{_shown(ids)}; a reference image must not be a candidate: remove them from one of the sets, "
            "or drop them from the candidates (--drop-reference-duplicates, API config "
            "drop_reference_duplicates)"
        )
        self.ids = ids


@dataclass(frozen=True)
class Overlap:
    """What the check found: counts, a few example ids and the threshold used (the overlap.json dict)."""

    duplicates_reference_candidates: int = 0  # candidates repeating a reference image (exact or near)
    exact_reference_candidates: int = 0  # of those, same pixels
    dropped_candidates: int = 0  # candidates removed before every later stage
    duplicates_within_real: int = 0  # real images whose pixels repeat an earlier real image
    duplicates_within_reference: int = 0  # the same within the reference
    examples: list[str] = field(default_factory=list)  # a few candidates repeating the reference
    examples_within_real: list[str] = field(default_factory=list)
    examples_within_reference: list[str] = field(default_factory=list)
    threshold: float = NEAR_DUPLICATE_COSINE

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict."""
        return asdict(self)


def _shown(ids: list[str], limit: int = EXAMPLES) -> str:
    return ", ".join(ids[:limit]) + (f" (and {len(ids) - limit} more)" if len(ids) > limit else "")


def pixel_digests(images: np.ndarray) -> list[bytes]:
    """sha256 of each decoded uint8 image (its shape included)."""
    return [
        hashlib.sha256(repr(img.shape).encode() + np.ascontiguousarray(img).tobytes()).digest()
        for img in np.asarray(images)
    ]


def _area_weights(n: int, side: int) -> np.ndarray:
    """[side, n] weights averaging n pixels into side cells by area (any ratio)."""
    edges = np.linspace(0.0, n, side + 1)
    lo, hi = edges[:-1, None], edges[1:, None]
    pix = np.arange(n)[None, :]
    cover = np.clip(np.minimum(hi, pix + 1) - np.maximum(lo, pix), 0.0, None)
    return (cover / cover.sum(axis=1, keepdims=True)).astype(np.float32)


def thumbnails(images: np.ndarray, side: int = THUMB_SIDE) -> np.ndarray:
    """Per-image zero-mean, unit-norm area-averaged thumbnails of uint8 images [N, H, W(, C)]: [N, side²]
    float32 (a flat image gives zeros). Channels are averaged first."""
    imgs = np.asarray(images)
    if imgs.ndim == 4:
        imgs_h, imgs_w = imgs.shape[1:3]
    elif imgs.ndim == 3:
        imgs_h, imgs_w = imgs.shape[1:]
    else:
        raise ValueError("thumbnails needs a stack of 2-D images [N, H, W] or [N, H, W, C]")
    wy, wx = _area_weights(imgs_h, side), _area_weights(imgs_w, side).T
    out = np.empty((len(imgs), side * side), dtype=np.float32)
    for start in range(0, len(imgs), CHUNK):
        x = imgs[start : start + CHUNK].astype(np.float32)
        if x.ndim == 4:
            x = x.mean(axis=3)
        t = (wy @ x @ wx).reshape(len(x), -1)
        t -= t.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(t, axis=1, keepdims=True)
        out[start : start + len(x)] = np.divide(t, norms, out=np.zeros_like(t), where=norms > 1e-3)
    return out


def nearest_cosine(queries: np.ndarray, base: np.ndarray) -> np.ndarray:
    """For each query thumbnail, its highest cosine with any base thumbnail (in blocks: bounded memory)."""
    best = np.full(len(queries), -1.0, dtype=np.float32)
    if len(base) == 0:
        return best
    for start in range(0, len(queries), BLOCK):
        best[start : start + BLOCK] = (queries[start : start + BLOCK] @ base.T).max(axis=1)
    return best


def stands_out(best: np.ndarray, next_best: np.ndarray, ratio: float = SPACING_RATIO) -> np.ndarray:
    """A near-duplicate is a copy when its gap to the match, 1 - best, is at most `ratio` times its gap to
    the nearest other image, 1 - next_best (a slice between two neighbours 1 mm apart is not)."""
    return (1.0 - np.asarray(best)) <= ratio * (1.0 - np.asarray(next_best))


def _next_best(
    rows: np.ndarray, real_t: np.ndarray, ref_t: np.ndarray, real_codes: np.ndarray, ref_codes: np.ndarray
) -> np.ndarray:
    """For the real images `rows`: the highest cosine with any image other than their best reference match
    and other than images of the same pixels (themselves included)."""
    out = np.full(len(rows), -1.0, dtype=np.float32)
    for start in range(0, len(rows), BLOCK):
        r = rows[start : start + BLOCK]
        q = real_t[r]
        to_ref = q @ ref_t.T
        to_ref[np.arange(len(r)), to_ref.argmax(axis=1)] = -1.0
        to_ref[real_codes[r][:, None] == ref_codes[None, :]] = -1.0
        to_real = q @ real_t.T
        to_real[real_codes[r][:, None] == real_codes[None, :]] = -1.0
        out[start : start + len(r)] = np.maximum(to_ref.max(axis=1), to_real.max(axis=1))
    return out


def _repeats(digests: list[bytes], ids: list[str]) -> list[str]:
    """Ids whose pixels repeat an earlier image of the same list."""
    seen: set[bytes] = set()
    out = []
    for digest, image_id in zip(digests, ids, strict=True):
        if digest in seen:
            out.append(image_id)
        seen.add(digest)
    return out


def find_overlap(
    real_ids: list[str],
    real: np.ndarray,
    reference_ids: list[str] | None = None,
    reference: np.ndarray | None = None,
    threshold: float = NEAR_DUPLICATE_COSINE,
) -> tuple[Overlap, np.ndarray]:
    """(what was found, mask of the real candidates that repeat a reference image)."""
    real_digests = pixel_digests(real)
    within_real = _repeats(real_digests, real_ids)
    mask = np.zeros(len(real_ids), dtype=bool)
    if reference is None or reference_ids is None or len(reference_ids) == 0:
        return Overlap(
            duplicates_within_real=len(within_real),
            examples_within_real=within_real[:EXAMPLES],
            threshold=threshold,
        ), mask
    ref_digests = pixel_digests(reference)
    within_ref = _repeats(ref_digests, reference_ids)
    ref_set = set(ref_digests)
    exact = np.array([d in ref_set for d in real_digests], dtype=bool)
    near = np.zeros(len(real_ids), dtype=bool)
    if real.shape[1:] == reference.shape[1:]:
        real_t, ref_t = thumbnails(real), thumbnails(reference)
        best = nearest_cosine(real_t, ref_t)
        rows = np.flatnonzero((best >= threshold) & ~exact)
        if rows.size:
            codes = np.unique(np.array(real_digests + ref_digests), return_inverse=True)[1]
            real_codes, ref_codes = codes[: len(real_digests)], codes[len(real_digests) :]
            near[rows] = stands_out(best[rows], _next_best(rows, real_t, ref_t, real_codes, ref_codes))
    mask = exact | near
    found = [i for i, hit in zip(real_ids, mask, strict=True) if hit]
    return Overlap(
        duplicates_reference_candidates=len(found),
        exact_reference_candidates=int(exact.sum()),
        duplicates_within_real=len(within_real),
        duplicates_within_reference=len(within_ref),
        examples=found[:EXAMPLES],
        examples_within_real=within_real[:EXAMPLES],
        examples_within_reference=within_ref[:EXAMPLES],
        threshold=threshold,
    ), mask


def resolve_overlap(overlap: Overlap, mask: np.ndarray, real_ids: list[str], drop: bool) -> Overlap:
    """Refuse candidates that repeat the reference (ReferenceOverlapError), or record them as dropped."""
    if not mask.any():
        return overlap
    if not drop:
        raise ReferenceOverlapError([i for i, hit in zip(real_ids, mask, strict=True) if hit])
    return Overlap(**{**overlap.to_dict(), "dropped_candidates": int(mask.sum())})


def _named(count: int, examples: list[str]) -> str:
    more = count - len(examples)
    return ", ".join(examples) + (f" (and {more} more)" if more > 0 else "")


def warnings(overlap: dict[str, Any]) -> list[str]:
    """One line per thing the user should know: exact duplicates within a set, dropped candidates."""
    lines = []
    for key, examples, where in (
        ("duplicates_within_real", "examples_within_real", "the real set"),
        ("duplicates_within_reference", "examples_within_reference", "the reference"),
    ):
        if overlap.get(key):
            lines.append(
                f"{overlap[key]} image(s) repeat the pixels of an earlier image in {where}: "
                f"{_named(overlap[key], list(overlap.get(examples, [])))}"
            )
    if overlap.get("dropped_candidates"):
        lines.append(
            f"dropped {overlap['dropped_candidates']} candidate(s) that repeat reference images: "
            f"{_named(overlap['dropped_candidates'], list(overlap.get('examples', [])))}"
        )
    return lines


def read_overlap(workdir: Path) -> dict[str, Any] | None:
    """The decode stage's overlap.json (None: not written, e.g. a work folder of an older version)."""
    path = WorkDir(workdir).overlap
    if not path.exists():
        return None
    data: dict[str, Any] = json.loads(path.read_text())
    return data
