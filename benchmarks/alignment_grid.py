"""Which geometric versions the alignment search should use once its gate has fired (research exp20)."""

from __future__ import annotations

import argparse
import time

from alignment_gate import gate_fires, ratios
from alignment_search import SIDE, add_folders_argument, parts_over
from bench_data import display_name, load_bench
from bench_metrics import auc_tpr

from synthaudit.models import score as S

DETAILS = """\
Every variant is the default's score where each similarity involving a real image is the max over a set of
geometric versions of that real image (real->generated and real->real; the whitening fitted on the
un-augmented images), as alignment_search.py's aug_small. The sets differ only in their shifts (in thumbnail
pixels of a 32-px side); all keep +-5 degrees and +-5 % scale:
  axis1   shifts of 1 along x and y (the product's 9 versions)
  diag1   axis1 + the 4 diagonal shifts of 1 (13 versions)
  half1   every shift on a 0.5 grid within 1 of the origin, per axis (29 versions)
  grid2   every shift on a 1 grid within 2 of the origin, per axis (29 versions)
  half2   every shift on a 0.5 grid within 2 (85 versions)
The gate (alignment_gate.py, the product's) is computed with axis1; `gate` says whether it fires. Labels only
score. AUC / TPR@1%FPR per variant; the last column the seconds of the largest set.
  .venv/bin/python benchmarks/alignment_grid.py ../shared/bench/fmnist-ddpm-dev \\
      bench-local/stress-fmnist/translate-medium bench-local/stress-mri128/translate-medium"""

ANGLES, ZOOMS = (-5.0, 5.0), (0.95, 1.05)


def shift_set(name: str) -> list[tuple[float, float]]:
    """The variant's non-zero shifts, (dx, dy) in thumbnail pixels."""
    if name == "axis1":
        return [(-1, 0), (1, 0), (0, -1), (0, 1)]
    if name == "diag1":
        return shift_set("axis1") + [(-1, -1), (-1, 1), (1, -1), (1, 1)]
    step, radius = {"half1": (0.5, 1), "grid2": (1.0, 2), "half2": (0.5, 2)}[name]
    n = round(radius / step)
    return [(i * step, j * step) for i in range(-n, n + 1) for j in range(-n, n + 1) if (i, j) != (0, 0)]


VARIANTS = ("axis1", "diag1", "half1", "grid2", "half2")


def version_list(name: str, image_side: int) -> list[tuple[float, float, float, float]]:
    """(dx, dy, angle, zoom) in image pixels, identity first."""
    px = image_side / SIDE
    out = [(0.0, 0.0, 0.0, 1.0)] + [(dx * px, dy * px, 0.0, 1.0) for dx, dy in shift_set(name)]
    return out + [(0.0, 0.0, a, 1.0) for a in ANGLES] + [(0.0, 0.0, 0.0, z) for z in ZOOMS]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, epilog=DETAILS, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_folders_argument(ap)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    args = ap.parse_args()
    names = args.variants.split(",")
    print("| folder | gate | " + " | ".join(names) + " | t last (s) |")
    print("|---|---|" + "---|" * len(names) + "---:|")
    for folder in args.folders:
        bench = load_bench(folder)
        fired = gate_fires(ratios(bench.real, bench.generated))
        cells, seconds = [], 0.0
        for name in names:
            began = time.perf_counter()
            score = S.rank_fuse(
                list(parts_over(bench.real, bench.generated, version_list(name, bench.real.shape[1])))
            )
            seconds = time.perf_counter() - began
            cells.append(auc_tpr(bench.y, score))
        print(
            f"| {display_name(folder)} | {'fired' if fired else 'off'} | "
            + " | ".join(cells)
            + f" | {seconds:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
