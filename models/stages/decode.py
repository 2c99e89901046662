"""Stage 1, decode: the image sets, read once within limits into a uint8 cache."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from synthaudit.models.config import AuditConfig
from synthaudit.models.io import ImageSet, Rejected, load_images
from synthaudit.models.reference_overlap import find_overlap, resolve_overlap
from synthaudit.models.results import unknown_labels_error
from synthaudit.models.stages.common import AuditInputs, Progress, _load_npz
from synthaudit.models.workdir import (
    WorkDir,
    atomic_save_npz,
    atomic_write_json,
)


def _rejected_dicts(items: list[Rejected]) -> list[dict[str, str]]:
    return [{"name": r.name, "reason": r.reason} for r in items]


@dataclass(frozen=True)
class DecodedPool:
    """The real pool as the decode stage leaves it: real images, then any reference images, with what
    was rejected and what the overlap check found (the same for every generated set audited against it)."""

    ids: list[str]
    images: np.ndarray
    from_reference: np.ndarray
    rejected: dict[str, list[dict[str, str]]]
    overlap: dict[str, Any]
    ignored: dict[str, list[str]]  # files that are not images at all, by set
    resized: dict[str, str]  # how each set's images were resized, where any was
    source_side: int = 0  # the real images' median side before resizing (models.io.ImageSet.source_side)


def decode_pool(inputs: AuditInputs, config: AuditConfig, on_progress: Progress) -> DecodedPool:
    """Decode the real images and the reference into the pool. Reference images join the real pool
    (after the real ones, marked in `from_reference`), so that every later stage treats them exactly like
    the candidates: same pool, same neighbours, exchangeable scores.

    Before any later stage: `--labels` ids not among the real images are refused, and so are candidates
    that repeat a reference image (models/reference_overlap.py), unless the config drops them."""
    parts = 2 if inputs.reference is not None else 1
    real = load_images(
        inputs.real,
        config.image_size,
        on_progress=lambda f: on_progress(f / parts),
        nifti_axis=config.nifti_axis,
    )
    rejected = {"real": _rejected_dicts(real.rejected)}
    if inputs.labels:
        error = unknown_labels_error(inputs.labels, real.ids)
        if error is not None:
            raise error
    reference = (
        load_images(
            inputs.reference,
            config.image_size,
            on_progress=lambda f: on_progress((1 + f) / 2),
            nifti_axis=config.nifti_axis,
        )
        if inputs.reference is not None
        else None
    )
    overlap, repeats = find_overlap(
        real.ids, real.images, reference.ids if reference else None, reference.images if reference else None
    )
    overlap = resolve_overlap(overlap, repeats, real.ids, config.drop_reference_duplicates)
    if repeats.any():  # dropped from the candidates before every later stage
        keep = ~repeats
        real = ImageSet(
            ids=[i for i, k in zip(real.ids, keep, strict=True) if k],
            images=real.images[keep],
            rejected=real.rejected,
            source_side=real.source_side,
        )
    pool_ids, pool_images = list(real.ids), real.images
    from_reference = np.zeros(len(real.ids), dtype=bool)
    if reference is not None:
        rejected["reference"] = _rejected_dicts(reference.rejected)
        pool_ids += reference.ids
        pool_images = np.concatenate([real.images, reference.images])
        from_reference = np.r_[from_reference, np.ones(len(reference.ids), dtype=bool)]
    sets = {"real": real, **({"reference": reference} if reference else {})}
    ignored = {role: list(images.ignored) for role, images in sets.items()}
    resized = {role: images.resized for role, images in sets.items() if images.resized}
    return DecodedPool(
        pool_ids, pool_images, from_reference, rejected, overlap.to_dict(), ignored, resized, real.source_side
    )


def write_decoded(workdir: Path, pool: DecodedPool, generated: ImageSet) -> None:
    """The decode stage's artifacts for one generated set against a decoded pool."""
    rejected = {"real": pool.rejected["real"], "generated": _rejected_dicts(generated.rejected)}
    if "reference" in pool.rejected:
        rejected["reference"] = pool.rejected["reference"]
    atomic_write_json(WorkDir(workdir).rejected, rejected)
    atomic_write_json(WorkDir(workdir).overlap, pool.overlap)
    resized = {**pool.resized, **({"generated": generated.resized} if generated.resized else {})}
    notes = {"ignored": {**pool.ignored, "generated": list(generated.ignored)}, "resized": resized}
    atomic_write_json(WorkDir(workdir).input_notes, notes)
    atomic_save_npz(
        WorkDir(workdir).decoded,
        {
            "real_ids": np.array(pool.ids, dtype=str),
            "real": pool.images,
            "real_from_reference": pool.from_reference,
            "generated_ids": np.array(generated.ids, dtype=str),
            "generated": generated.images,
            # the images' sides before resizing: how fine a registration their detail asks for (stage 4)
            "source_sides": np.array([pool.source_side, generated.source_side], dtype=np.int64),
        },
    )


def run_decode(workdir: Path, inputs: AuditInputs, config: AuditConfig, on_progress: Progress) -> None:
    """Decode the image sets once into a uint8 cache: the real pool (`decode_pool`), then the generated
    set; what the overlap check found is written to overlap.json."""
    parts = 3 if inputs.reference is not None else 2
    pool = decode_pool(inputs, config, lambda f: on_progress(f * (parts - 1) / parts))
    generated = load_images(
        inputs.generated,
        config.image_size,
        on_progress=lambda f: on_progress((parts - 1 + f) / parts),
        nifti_axis=config.nifti_axis,
    )
    write_decoded(workdir, pool, generated)


def read_input_notes(workdir: Path) -> dict[str, Any]:
    """The decode stage's inputs.json: {"ignored": {set: [names]}, "resized": {set: sentence}} (empty
    for a work folder of an older version)."""
    import json

    path = WorkDir(workdir).input_notes
    data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
    return {"ignored": data.get("ignored", {}), "resized": data.get("resized", {})}


def load_decoded(workdir: Path) -> tuple[ImageSet, ImageSet]:
    """The decoded real pool (real images, then any reference images) and the generated set."""
    data = _load_npz(WorkDir(workdir).decoded)
    real = ImageSet(ids=[str(i) for i in data["real_ids"]], images=data["real"], rejected=[])
    generated = ImageSet(ids=[str(i) for i in data["generated_ids"]], images=data["generated"], rejected=[])
    return real, generated


def load_reference_mask(workdir: Path) -> np.ndarray:
    """For each image of the real pool: True when it came from the reference set."""
    with np.load(WorkDir(workdir).decoded, allow_pickle=False) as data:
        if "real_from_reference" in data.files:
            return np.asarray(data["real_from_reference"], dtype=bool)
        return np.zeros(len(data["real_ids"]), dtype=bool)
