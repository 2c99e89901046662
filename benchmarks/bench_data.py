"""Benchmark folders with known answers (real/, generated/, labels.csv): where they are and how they load."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synthaudit.models.io import load_images
from synthaudit.models.results import read_labels_csv

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "bench"  # ../shared/bench next to the repository
LOCAL_BENCH = REPO / "bench-local"  # what benchmarks/make_*_bench.py write (git-ignored)
DDPM_FOLDERS = ("fmnist-ddpm-dev", "fmnist-ddpm-dev-hard")
IMAGE_SIZE = 64  # the audit's default decode size


@dataclass
class BenchImages:
    """One decoded benchmark folder: real and generated uint8 images, the real ids and their labels."""

    name: str
    real: np.ndarray  # uint8 [N, S, S], ids ascending (the audit's order)
    generated: np.ndarray  # uint8 [M, S, S]
    ids: list[str]
    y: np.ndarray  # int [N], 1 = used for training


def add_folder_arguments(ap: argparse.ArgumentParser) -> None:
    """--bench DIR and --folders a,b: the folders a script runs on (default: the two shared DDPM folders)."""
    ap.add_argument(
        "--bench",
        type=Path,
        default=SHARED_BENCH,
        help=f"folder holding the benchmark folders (default {SHARED_BENCH})",
    )
    ap.add_argument(
        "--folders",
        default=",".join(DDPM_FOLDERS),
        help="comma-separated folder names under --bench (default %(default)s)",
    )


def folder_paths(args: argparse.Namespace) -> list[Path]:
    """The folders named by --bench and --folders."""
    return [args.bench / name for name in args.folders.split(",") if name]


def display_name(folder: Path) -> str:
    """A folder's name in a table: `stress-x/name` for a stress-suite folder, else its own name."""
    return f"{folder.parent.name}/{folder.name}" if folder.parent.name.startswith("stress") else folder.name


def load_bench(folder: Path, size: int = IMAGE_SIZE) -> BenchImages:
    """Decode a benchmark folder with the audit's own loader (models.io.load_images) and read its labels."""
    real = load_images(folder / "real", size)
    generated = load_images(folder / "generated", size)
    labels = read_labels_csv(folder / "labels.csv")
    y = np.array([labels[i] for i in real.ids])
    return BenchImages(folder.name, real.images, generated.images, list(real.ids), y)
