"""Would a set-level distance-to-closest-record (DCR) check have caught these generators?"""

from __future__ import annotations

import argparse

import numpy as np
from bench_data import add_folder_arguments, folder_paths, load_bench
from whitened_recipe import pixel_features, whiten

from synthaudit.models.index import search
from synthaudit.models.metrics import roc_auc

DETAILS = """\
In the default audit's feature space (whitened 32-px NCC thumbnails, cosine), per folder: the share of
generated images whose nearest-real similarity exceeds the 95 % (99 %) quantile of the real images'
leave-one-out nearest-neighbour similarities (5 % (1 %) without copying), and the AUC separating the two
distributions (0.5 = no closer than real to real). Control: a seeded random half of the NOT-used real
images (labels used only to build it) stands in for a generator that cannot have memorised.
  .venv/bin/python benchmarks/dcr_check.py
  .venv/bin/python benchmarks/dcr_check.py \\
      --bench bench-local --folders fmnist-dcgan-2000,fmnist-dcgan-5000"""


def dcr(real: np.ndarray, generated: np.ndarray) -> dict[str, float]:
    """DCR figures of one (real, generated) pair in the default's whitened view."""
    fr, fg = whiten(pixel_features(real), pixel_features(generated))
    g_sims, _ = search(fg, fr, 1, device="cpu")
    r_sims, _ = search(fr, fr, 1, exclude_self=True, device="cpu")
    g, r = g_sims[:, 0], r_sims[:, 0]
    y = np.r_[np.ones(len(g), int), np.zeros(len(r), int)]
    return {
        "above_q95": float((g > np.quantile(r, 0.95)).mean()),
        "above_q99": float((g > np.quantile(r, 0.99)).mean()),
        "auc": roc_auc(y, np.r_[g, r]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, epilog=DETAILS, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_folder_arguments(ap)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    print(
        "| folder | generated set | generated | share above real q95 (null 5 %) | above q99 (null 1 %) "
        "| DCR AUC (null 0.5) |"
    )
    print("|---|---|---:|---:|---:|---:|")
    for folder in folder_paths(args):
        bench = load_bench(folder)
        real = bench.real
        unused = np.flatnonzero(bench.y == 0)
        stand_in = rng.choice(unused, len(unused) // 2, replace=False)
        rest = np.setdiff1d(np.arange(len(real)), stand_in)
        pairs = [
            ("the generator's images", real, bench.generated),
            ("control: half the not-used real images", real[rest], real[stand_in]),
        ]
        for name, r, g in pairs:
            m = dcr(r, g)
            print(
                f"| {bench.name} | {name} | {len(g)} | {m['above_q95']:.3f} | {m['above_q99']:.3f} "
                f"| {m['auc']:.3f} |"
            )


if __name__ == "__main__":
    main()
