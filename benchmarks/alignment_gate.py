"""A label-free gate for the alignment search: on where shifted/rotated/scaled real images halve distances."""

from __future__ import annotations

import argparse

import numpy as np
from alignment_search import SIDE, add_folders_argument, aug_parts, default_parts, versions, warp
from bench_data import display_name, load_bench
from bench_metrics import auc_tpr
from whitened_recipe import pixel_features

from synthaudit.models import score as S
from synthaudit.models.alignment import GATE_RATIO, GATE_SHARE  # the product's gate, the same two numbers

DETAILS = """\
Per generated image: d_id = whitened distance to its nearest real thumbnail (the default's view), d_aug = the
same over alignment_search.py's 9 versions of every real thumbnail (aug_small). Printed per folder: the 10 %
and 50 % quantiles of d_aug / d_id and the share below 0.5 / 0.7, then the default's, aug_small's and the
gated score's AUC / TPR@1%FPR (labels only score). Gated: aug_small's score when more than GATE_SHARE of the
generated images have d_aug / d_id < GATE_RATIO, else the default's.
  .venv/bin/python benchmarks/alignment_gate.py \\
      ../shared/bench/fmnist-ddpm-dev-hard ../shared/bench/fmnist-ddpm-dev \\
      bench-local/mri-*/ bench-local/stress-fmnist/*/ bench-local/stress-mri128/*/"""

EXACT_COPY = 1e-6  # distance floor: an exact copy (distance 0 in both views) counts as ratio 1, not 0


def ratios(
    real: np.ndarray,
    gen: np.ndarray,
    side: int = SIDE,
    vs: list[tuple[float, float, float, float]] | None = None,
) -> np.ndarray:
    """d_aug / d_id of every generated image (no labels), over the versions `vs` (default aug_small's)."""
    fr, fg = pixel_features(real, side), pixel_features(gen, side)
    w = S.fit_whitening(np.concatenate([fr, fg]))
    wr, wg = S.apply_whitening(fr, w), S.apply_whitening(fg, w)
    s_id = (wg @ wr.T).max(axis=1)
    s_aug = s_id.copy()
    for v in versions(real.shape[1], small=True)[1:] if vs is None else vs:
        wv = S.apply_whitening(pixel_features(warp(real, *v), side), w)
        np.maximum(s_aug, (wg @ wv.T).max(axis=1), out=s_aug)
    d_id = np.maximum(np.sqrt(np.clip(2 - 2 * s_id, 0, None)), EXACT_COPY)
    d_aug = np.maximum(np.sqrt(np.clip(2 - 2 * s_aug, 0, None)), EXACT_COPY)
    return d_aug / d_id


def gate_fires(r: np.ndarray) -> bool:
    """True when more than GATE_SHARE of the generated images have d_aug / d_id < GATE_RATIO."""
    return bool((r < GATE_RATIO).mean() > GATE_SHARE)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, epilog=DETAILS, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_folders_argument(ap)
    args = ap.parse_args()
    print(
        "| folder | d_aug/d_id q10 / q50 | share < 0.5 | share < 0.7 | default AUC / TPR@1% "
        "| aug_small AUC / TPR@1% "
        "| gated AUC / TPR@1% |"
    )
    print("|---|---|---:|---:|---|---|---|")
    for folder in args.folders:
        bench = load_bench(folder)
        r = ratios(bench.real, bench.generated)
        d = S.rank_fuse(list(default_parts(bench.real, bench.generated)))
        a = S.rank_fuse(list(aug_parts(bench.real, bench.generated, small=True)))
        g = a if gate_fires(r) else d
        print(
            f"| {display_name(folder)} | {np.quantile(r, 0.1):.2f} / {np.quantile(r, 0.5):.2f} | "
            f"{(r < 0.5).mean():.3f} | {(r < 0.7).mean():.3f} | {auc_tpr(bench.y, d)} | "
            f"{auc_tpr(bench.y, a)} | "
            f"{auc_tpr(bench.y, g)} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
