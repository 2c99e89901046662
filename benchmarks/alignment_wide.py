"""A second, wider gate for copies moved, turned or resized beyond what the product's gate sees (exp21)."""

from __future__ import annotations

import argparse

from alignment_gate import gate_fires, ratios
from alignment_search import SIDE, add_folders_argument, default_parts, parts_over
from bench_data import display_name, load_bench
from bench_metrics import auc_tpr

from synthaudit.models import score as S
from synthaudit.models.alignment import GATE_RATIO

DETAILS = """\
Per folder: whether the product's gate (9 versions) fires; if it does not, the wide probe: d_id = whitened
distance of each generated image to its nearest real thumbnail, d_wide = the same over the probe's 12 versions
(shifts of 2 thumbnail pixels along x, y and the diagonals; +-10 degrees; +-10 % scale) and the identity;
`share` = share of generated images with d_wide / d_id < GATE_RATIO; the probe fires when share > GATE_SHARE,
as the product's gate does. Then AUC / TPR@1%FPR of the default, of the wide search (every similarity involving
a real image the max over 33 versions: shifts on a one-pixel grid within 2 pixels, +-5 and +-10 degrees, +-5
and +-10 % scale) and of the two-gate score (product gate fired: the product's; else probe fired: the wide
search; else the default). The wide search runs only where the probe fires. Labels only score.
  .venv/bin/python benchmarks/alignment_wide.py ../shared/bench/fmnist-ddpm-dev-hard \\
      ../shared/bench/fmnist-ddpm-dev bench-local/mri-*/ bench-local/stress-fmnist/*/ bench-local/stress-mri128/*/"""

Version = tuple[float, float, float, float]


def probe_versions(side: int) -> list[Version]:
    """The wide probe's 12 versions (no identity), shifts in image pixels."""
    px = 2 * side / SIDE
    shifts = [(i * px, j * px) for i in (-1, 0, 1) for j in (-1, 0, 1) if (i, j) != (0, 0)]
    out = [(dx, dy, 0.0, 1.0) for dx, dy in shifts]
    return out + [(0.0, 0.0, a, 1.0) for a in (-10.0, 10.0)] + [(0.0, 0.0, 0.0, z) for z in (0.9, 1.1)]


def wide_versions(side: int) -> list[Version]:
    """The wide search's 33 versions, identity first."""
    px = side / SIDE
    shifts = [(i * px, j * px) for i in range(-2, 3) for j in range(-2, 3) if (i, j) != (0, 0)]
    out: list[Version] = [(0.0, 0.0, 0.0, 1.0)] + [(dx, dy, 0.0, 1.0) for dx, dy in shifts]
    out += [(0.0, 0.0, a, 1.0) for a in (-10.0, -5.0, 5.0, 10.0)]
    return out + [(0.0, 0.0, 0.0, z) for z in (0.9, 0.95, 1.05, 1.1)]


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, epilog=DETAILS, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_folders_argument(ap)
    args = ap.parse_args()
    print("| folder | gate | probe share | probe | default | wide search | two gates |")
    print("|---|---|---:|---|---|---|---|")
    for folder in args.folders:
        bench = load_bench(folder)
        fired = gate_fires(ratios(bench.real, bench.generated))
        default = S.rank_fuse(list(default_parts(bench.real, bench.generated)))
        if fired:
            print(f"| {display_name(folder)} | fired | – | – | {auc_tpr(bench.y, default)} | – | (product) |")
            continue
        r = ratios(bench.real, bench.generated, vs=probe_versions(bench.real.shape[1]))
        share = float((r < GATE_RATIO).mean())
        probe = gate_fires(r)
        wide = "–"  # the wide search only where the probe fires (33 versions: minutes per folder)
        both = auc_tpr(bench.y, default)
        if probe:
            score = S.rank_fuse(
                list(parts_over(bench.real, bench.generated, wide_versions(bench.real.shape[1])))
            )
            wide = both = auc_tpr(bench.y, score)
        print(
            f"| {display_name(folder)} | off | {share:.3f} | {'fired' if probe else 'off'} | "
            f"{auc_tpr(bench.y, default)} | {wide} | {both} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
