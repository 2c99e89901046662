"""Sharded embed + search: the generated set in slices, each embedded and searched on its own, then merged.

A large generated set is split into contiguous shards. Each shard embeds its slice and searches
real -> slice top-k (exact); ``merge_topk`` turns the per-shard top-k into the global top-k, ordered
by similarity, then by global index for ties, which is how ``models.index.search`` orders its answer.
So ``run_merge`` writes the same ``features.npz`` and ``neighbours.npz`` as the unsharded embed and
search stages (bit for bit on CPU, where the encoders give each image the same features whatever
batch it is in). Shard files live under ``<workdir>/shards/`` and are removed after the merge.

The order of work: ``write_plan`` + ``run_real`` (once), ``run_shard`` (once per shard, on any worker,
in any order), ``run_merge`` (once, after every shard). ``run_sharded`` does all of it in-process.
"""

from __future__ import annotations

import json
import shutil
import time
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from synthaudit.models.config import AuditConfig
from synthaudit.models.stages import (
    ATTRIBUTION_K,
    _load_npz,
    _record_timing,
    aligned_gr,
    aligned_view,
    embed_features,
    method_for,
    neighbourhood_size,
    run_search,
    stage_done,
    stored_versions,
    version_features,
)
from synthaudit.models.workdir import WorkDir, atomic_save_npz, atomic_write_bytes

Progress = Callable[[float], None]


def _noop(_: float) -> None:
    return None


# --- pure helpers -----------------------------------------------------------------------------------


def shard_ranges(n: int, shards: int, align: int = 1) -> list[tuple[int, int]]:
    """Split range(n) into at most `shards` contiguous, non-empty [start, stop) ranges of near-equal size.

    Every boundary but the last is a multiple of `align` (so a shard's embedding batches line up
    with the unsharded run's); fewer ranges come back when n is too small for `shards` of them.
    """
    if n < 0 or shards < 1 or align < 1:
        raise ValueError(f"shard_ranges needs n >= 0, shards >= 1, align >= 1 (got {n}, {shards}, {align})")
    if n == 0:
        return []
    units = -(-n // align)  # blocks of `align` rows, the last one possibly short
    shards = min(shards, units)
    base, extra = divmod(units, shards)
    ranges, start = [], 0
    for i in range(shards):
        stop = min(n, start + (base + (1 if i < extra else 0)) * align)
        ranges.append((start, stop))
        start = stop
    return ranges


def merge_topk(parts: Sequence[tuple[np.ndarray, np.ndarray, int]], k: int) -> tuple[np.ndarray, np.ndarray]:
    """Merge per-shard top-k into the global top-k.

    parts: (sims float [N, k_i] (higher = closer), local idx int [N, k_i], offset of the shard in the
    whole base). Returns (sims float32 [N, min(k, sum k_i)], global idx int64), every row ordered by
    similarity descending, then global index ascending: deterministic, and equal to one search over
    the whole base when each part is an exact top-k of its shard.
    """
    if not parts:
        raise ValueError("merge_topk needs at least one part")
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    rows = {np.asarray(s).shape[0] for s, _, _ in parts}
    if len(rows) != 1:
        raise ValueError(f"parts disagree on the number of queries: {sorted(rows)}")
    sims = np.concatenate([np.asarray(s, dtype=np.float32) for s, _, _ in parts], axis=1)
    idx = np.concatenate([np.asarray(i, dtype=np.int64) + int(off) for _, i, off in parts], axis=1)
    order = np.lexsort((idx, -sims), axis=1)[:, : min(k, sims.shape[1])]
    return np.take_along_axis(sims, order, 1), np.take_along_axis(idx, order, 1)


def read_rows(path: Path, name: str, start: int, stop: int | None) -> np.ndarray:
    """Rows [start, stop) of array `name` in an uncompressed .npz, without reading the rest (memory map)."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{name}.npy")
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as fh:
                fh.seek(info.header_offset)
                local = fh.read(30)
                data_start = (
                    info.header_offset
                    + 30
                    + int.from_bytes(local[26:28], "little")
                    + int.from_bytes(local[28:30], "little")
                )
                fh.seek(data_start)
                version = np.lib.format.read_magic(fh)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(fh)
                offset = fh.tell()
            if not fortran and not dtype.hasobject and len(shape) >= 1:
                array = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=tuple(shape))
                return np.array(array[start:stop])
    with np.load(path, allow_pickle=False) as data:
        return np.asarray(data[name][start:stop])


def _count_rows(path: Path, name: str) -> int:
    with np.load(path, allow_pickle=False) as data:
        return int(data[name].shape[0])


# --- the plan ---------------------------------------------------------------------------------------


def shard_dir(workdir: Path) -> Path:
    return WorkDir(workdir).shards


def generated_count(workdir: Path) -> int:
    """How many generated images the decode stage kept (reads only their ids)."""
    return _count_rows(WorkDir(workdir).decoded, "generated_ids")


def _encoders(config: AuditConfig) -> list[str]:
    return sorted({view.encoder for view in method_for(config).views(config)})


def write_plan(workdir: Path, config: AuditConfig, shards: int) -> list[tuple[int, int]]:
    """Fix the shard ranges of an audit in shards/plan.json (kept when it already exists)."""
    path = WorkDir(workdir).shard_plan
    if path.exists():
        return [tuple(r) for r in json.loads(path.read_text())["ranges"]]
    path.parent.mkdir(parents=True, exist_ok=True)
    ranges = shard_ranges(generated_count(workdir), shards, align=config.batch_size)
    atomic_write_bytes(path, json.dumps({"ranges": ranges}).encode())
    return ranges


def read_plan(workdir: Path) -> list[tuple[int, int]]:
    """The shard ranges written by write_plan."""
    return [tuple(r) for r in json.loads(WorkDir(workdir).shard_plan.read_text())["ranges"]]


def _shard_path(workdir: Path, index: int) -> Path:
    return WorkDir(workdir).shard(index)


# --- stage pieces -----------------------------------------------------------------------------------


def run_real(workdir: Path, config: AuditConfig, on_progress: Progress = _noop) -> None:
    """Embed the real set once (every shard searches against it): shards/real.npz."""
    path = WorkDir(workdir).shard_real
    if path.exists() or stage_done("search", workdir):
        on_progress(1.0)
        return
    started = time.perf_counter()
    real = read_rows(WorkDir(workdir).decoded, "real", 0, None)
    features = embed_features(workdir, config, real, on_progress)
    arrays: dict[str, np.ndarray] = {f"{name}/real": f for name, f in features.items()}
    for name in sorted({v.encoder for v in method_for(config).views(config) if aligned_view(v, config)}):
        for i, f in enumerate(version_features(workdir, config, name, real)):
            arrays[f"{name}/real_version_{i}"] = f
    arrays["seconds"] = np.array(time.perf_counter() - started)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_save_npz(path, arrays)


def run_shard(workdir: Path, config: AuditConfig, index: int, on_progress: Progress = _noop) -> None:
    """Embed generated shard `index`; per view search real -> shard top-k, and shard -> real (its rows of
    the generated -> real neighbours): shards/shard-<index>.npz."""
    from synthaudit.models.index import SearchOptions, search

    path = _shard_path(workdir, index)
    if path.exists() or stage_done("search", workdir):
        on_progress(1.0)
        return
    start, stop = read_plan(workdir)[index]
    real = _load_npz(WorkDir(workdir).shard_real)
    began = time.perf_counter()
    images = read_rows(WorkDir(workdir).decoded, "generated", start, stop)
    features = embed_features(workdir, config, images, lambda f: on_progress(0.9 * f))
    embedded = time.perf_counter()
    arrays: dict[str, np.ndarray] = {f"{name}/generated": f for name, f in features.items()}
    for view in method_for(config).views(config):
        options: SearchOptions = {
            "metric": view.metric,
            "device": config.device,
            "ivf_min_size": config.ivf_min_size,
        }
        vectors = real[f"{view.encoder}/real"]
        k = neighbourhood_size(len(vectors), config)
        arrays[f"{view.key}/rg_sims"], arrays[f"{view.key}/rg_idx"] = search(
            vectors, features[view.encoder], k, **options
        )
        arrays[f"{view.key}/gr_sims"], arrays[f"{view.key}/gr_idx"] = search(
            features[view.encoder], vectors, ATTRIBUTION_K, **options
        )
        if aligned_view(view, config) and len(vectors) > 1:
            # only the gate's search: the gate is decided at the merge, over every shard, and only a fired
            # gate's searches (real -> generated and real -> real over the versions) run there
            versions = stored_versions(real, view.encoder)
            gr = (arrays[f"{view.key}/gr_sims"], arrays[f"{view.key}/gr_idx"])
            arrays[f"{view.key}/gr_aug_sims"], arrays[f"{view.key}/gr_aug_idx"] = aligned_gr(
                versions, features[view.encoder], gr, options
            )
    arrays["seconds_embed"] = np.array(embedded - began)
    arrays["seconds_search"] = np.array(time.perf_counter() - embedded)
    atomic_save_npz(path, arrays)
    on_progress(1.0)


def shard_done(workdir: Path, index: int) -> bool:
    """True when shard `index` has its results on disk."""
    return _shard_path(workdir, index).exists()


def run_merge(workdir: Path, config: AuditConfig, on_progress: Progress = _noop) -> None:
    """Merge the shards into features.npz and neighbours.npz (as the embed and search stages write them)."""
    workdir = Path(workdir)
    if stage_done("search", workdir):
        on_progress(1.0)
        return
    began = time.perf_counter()
    ranges = read_plan(workdir)
    missing = [i for i in range(len(ranges)) if not _shard_path(workdir, i).exists()]
    if missing:
        raise FileNotFoundError(f"shard(s) {missing} of {len(ranges)} have no results")
    real = _load_npz(WorkDir(workdir).shard_real)
    shards = [_load_npz(_shard_path(workdir, i)) for i in range(len(ranges))]
    features: dict[str, np.ndarray] = {}
    for name in _encoders(config):
        features[f"{name}/real"] = real[f"{name}/real"]
        features[f"{name}/generated"] = np.concatenate([s[f"{name}/generated"] for s in shards])
    precomputed: dict[str, np.ndarray] = {}
    for view in method_for(config).views(config):
        k = neighbourhood_size(len(real[f"{view.encoder}/real"]), config)
        parts = [
            (s[f"{view.key}/rg_sims"], s[f"{view.key}/rg_idx"], start)
            for s, (start, _) in zip(shards, ranges)
        ]
        precomputed[f"{view.key}/rg_sims"], precomputed[f"{view.key}/rg_idx"] = merge_topk(parts, k)
        names = ("gr_sims", "gr_idx", "gr_aug_sims", "gr_aug_idx")
        for name in names:  # rows of the generated set: shard after shard
            if f"{view.key}/{name}" in shards[0]:
                precomputed[f"{view.key}/{name}"] = np.concatenate([s[f"{view.key}/{name}"] for s in shards])
    precomputed.update({key: value for key, value in real.items() if "/real_version_" in key})
    atomic_save_npz(WorkDir(workdir).features, features)
    run_search(workdir, None, config, on_progress, precomputed=precomputed)  # the rest: real -> real
    seconds = lambda key: float(sum(float(s[key]) for s in shards))
    _record_timing(workdir, "embed", float(real["seconds"]) + seconds("seconds_embed"))
    _record_timing(workdir, "search", seconds("seconds_search") + time.perf_counter() - began)
    shutil.rmtree(shard_dir(workdir), ignore_errors=True)


def run_sharded(
    workdir: Path, config: AuditConfig, shards: int, on_progress: Progress = _noop
) -> list[tuple[int, int]]:
    """Every piece in this process, one after the other (what the Celery chord spreads over workers)."""
    ranges = write_plan(workdir, config, shards)
    run_real(workdir, config)
    for i in range(len(ranges)):
        run_shard(workdir, config, i)
        on_progress((i + 1) / (len(ranges) + 1))
    run_merge(workdir, config)
    on_progress(1.0)
    return ranges
