"""The one place that names every artifact of an audit's work folder, and the atomic writers that put them there.

Every reader and writer of a work folder (the stages, the sharded search, the report, the CLI, the API and the
worker) takes its paths from `WorkDir`; the names on disk are those of every earlier version, so an existing work
folder is still read. Writers go through a private temp file in the same folder (0600, whatever the umask allows)
and `os.replace`, so a reader never sees half a file and a failed write leaves none behind.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

# --- the names on disk --------------------------------------------------------------------------------------

DECODED = "images.npz"  # decode: the uint8 image cache (real pool, then generated)
REJECTED = "rejected.json"  # decode: files that could not be read, per role
OVERLAP = "overlap.json"  # decode: duplicates between reference and candidates, and within each set
INPUT_NOTES = "inputs.json"  # decode: per set, files that are not images (names) and how images were resized
PRETRAINED = "encoder.done"  # pretrain: written once every fitted encoder is on disk
FEATURES = "features.npz"  # embed: `<encoder>/real`, `<encoder>/generated`
NEIGHBOURS = "neighbours.npz"  # search: `<view>/{rg,rr,gr}_{sims,idx}`
ALIGNMENT = "alignment.json"  # search: whether the alignment gate fired, and its share, per view
REGISTRATION = (
    "registration.npz"  # search: each real image's registered evidence (models/registered_score.py)
)
SCORES = "scores.npz"  # decide: scores, evidence, p- and q-values
RESULTS_CSV = "results.csv"  # decide: one row per real image
REFERENCE_CSV = "reference.csv"  # decide: one row per reference-set image (only with a reference set)
REFERENCE_CHECK = "reference_check.npz"
METRICS = "metrics.json"  # decide: the summary (its presence marks the audit finished)
CONFIG = "config.json"  # the config the folder's artifacts were made with (pinned by the first stage)
TIMINGS = "timings.json"  # wall seconds per stage
SHARD_DIR = "shards"  # the sharded embed + search (models/shards.py); removed after the merge
SHARD_PLAN = "plan.json"  # in SHARD_DIR: the shard ranges
SHARD_REAL = "real.npz"  # in SHARD_DIR: the real set's features
SHARD_FILE = "shard-{index:05d}.npz"  # in SHARD_DIR: one shard's features and neighbours
REPORT_FILE = "report-{aggregation}.html"  # the API's cached HTML report, per patient aggregation rule
ATTEMPT_MARKER = ".attempt-{stage}"  # the worker's marker of a stage (or stage piece) in progress

# The fitted state of the encoders the pretrain stage fits on the audit's own images.
FITTED_ENCODER_FILES = {
    "mae": "encoder.safetensors",
    "pixels_whitened": "whitening.safetensors",
    "vit_tokens_whitened": "vit_tokens.safetensors",
}
# The artifact whose presence marks each stage done.
STAGE_ARTIFACTS = {
    "decode": DECODED,
    "pretrain": PRETRAINED,
    "embed": FEATURES,
    "search": NEIGHBOURS,
    "decide": METRICS,
}


@dataclass(frozen=True)
class WorkDir:
    """An audit's work folder: one path per artifact."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def decoded(self) -> Path:
        return self.path / DECODED

    @property
    def registration(self) -> Path:
        return self.path / REGISTRATION

    @property
    def rejected(self) -> Path:
        return self.path / REJECTED

    @property
    def overlap(self) -> Path:
        """What models/reference_overlap.py found (and dropped) at decode."""
        return self.path / OVERLAP

    @property
    def input_notes(self) -> Path:
        """What the decode stage tells the user about each set: files left out, images resized."""
        return self.path / INPUT_NOTES

    @property
    def pretrained(self) -> Path:
        return self.path / PRETRAINED

    @property
    def features(self) -> Path:
        return self.path / FEATURES

    @property
    def neighbours(self) -> Path:
        return self.path / NEIGHBOURS

    @property
    def alignment(self) -> Path:
        return self.path / ALIGNMENT

    @property
    def scores(self) -> Path:
        return self.path / SCORES

    @property
    def results_csv(self) -> Path:
        return self.path / RESULTS_CSV

    @property
    def reference_csv(self) -> Path:
        return self.path / REFERENCE_CSV

    @property
    def metrics(self) -> Path:
        return self.path / METRICS

    @property
    def reference_check(self) -> Path:
        """The reference check's blind scores (models/reference_check.py), when the check ran."""
        return self.path / REFERENCE_CHECK

    @property
    def config(self) -> Path:
        return self.path / CONFIG

    @property
    def timings(self) -> Path:
        return self.path / TIMINGS

    @property
    def mae_checkpoint(self) -> Path:
        """The MAE the pretrain stage fits (when the audit names no checkpoint of its own)."""
        return self.path / FITTED_ENCODER_FILES["mae"]

    def stage_artifact(self, stage: str) -> Path:
        """The file whose presence marks the stage done (KeyError for an unknown stage)."""
        return self.path / STAGE_ARTIFACTS[stage]

    def fitted_encoder(self, encoder: str) -> Path | None:
        """Where the pretrain stage keeps an encoder's fitted state (None: the encoder needs no fitting)."""
        name = FITTED_ENCODER_FILES.get(encoder)
        return self.path / name if name else None

    @property
    def shards(self) -> Path:
        return self.path / SHARD_DIR

    @property
    def shard_plan(self) -> Path:
        return self.shards / SHARD_PLAN

    @property
    def shard_real(self) -> Path:
        return self.shards / SHARD_REAL

    def shard(self, index: int) -> Path:
        return self.shards / SHARD_FILE.format(index=index)

    def report(self, aggregation: str) -> Path:
        """The cached HTML report for one patient aggregation rule."""
        return self.path / REPORT_FILE.format(aggregation=aggregation)

    def attempt_marker(self, stage: str) -> Path:
        return self.path / ATTEMPT_MARKER.format(stage=stage)


# --- atomic writers -----------------------------------------------------------------------------------------


@contextmanager
def _replacing(path: Path) -> Iterator[IO[bytes]]:
    """A private temp file next to path (mkstemp: 0600) that replaces path on success, and is gone on failure."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write a file so that readers never see half of it."""
    with _replacing(path) as fh:
        fh.write(data)


def atomic_save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """np.savez (uncompressed, so models/shards.py can memory-map rows) to a temp file, then rename."""
    with _replacing(path) as fh:
        np.savez(
            fh, allow_pickle=False, **arrays
        )  # no object arrays: every reader loads with allow_pickle=False


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def atomic_write_json(path: Path, data: Any) -> None:
    """JSON (indented, keys sorted, numpy scalars as Python numbers) written atomically."""
    atomic_write_bytes(path, json.dumps(data, indent=2, sort_keys=True, default=_json_default).encode())
