"""The scoring table of docs/research.md: raw-pixel baselines against each piece of the default score."""

from __future__ import annotations

import argparse
import time

import numpy as np
from bench_data import add_folder_arguments, folder_paths, load_bench
from bench_metrics import evaluate, fmt
from whitened_recipe import pixel_features, whiten

from synthaudit.models import score as sc
from synthaudit.models.index import search

DETAILS = """\
Rows: pixels (NCC thumbnails, max cosine to generated), ncc-ratio (unwhitened, knn_log_ratio with
K = default_k(N)), w-max / w-ratio / w-attr (whitened: max cosine, kNN ratio, attribution margin) and
w-fused = density_attribution_score (the default). Wall = features + whitening + searches + scoring,
decoding excluded (printed apart). Labels only score.
  .venv/bin/python benchmarks/scoring_table.py --size 64 --side 32"""


class Clock:
    """Seconds since the last lap."""

    def __init__(self) -> None:
        self.t = time.perf_counter()

    def lap(self) -> float:
        now = time.perf_counter()
        dt, self.t = now - self.t, now
        return dt


def cpu_search(
    queries: np.ndarray, base: np.ndarray, k: int, exclude_self: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Exact FAISS cosine search on the CPU (models.index.search)."""
    return search(queries, base, k, device="cpu", exclude_self=exclude_self)


def folder_rows(real: np.ndarray, gen: np.ndarray, side: int) -> list[tuple[str, np.ndarray, float]]:
    """(name, scores, wall) of every row for one folder."""
    n, k, clock = len(real), sc.default_k(len(real)), Clock()
    fr, fg = pixel_features(real, side), pixel_features(gen, side)
    t_feat = clock.lap()
    s_rg, _ = cpu_search(fr, fg, k)
    t_rg = clock.lap()
    s_rr, _ = cpu_search(fr, fr, k, exclude_self=True)
    t_rr = clock.lap()
    rows = [
        ("pixels", sc.max_similarity(s_rg), t_feat + t_rg),
        ("ncc-ratio", sc.knn_log_ratio(s_rg, s_rr, k), t_feat + t_rg + t_rr),
    ]
    clock.lap()
    wr, wg = whiten(fr, fg)
    t_w = clock.lap()
    w_rg, _ = cpu_search(wr, wg, k)
    t_rg = clock.lap()
    w_rr, _ = cpu_search(wr, wr, k, exclude_self=True)
    t_rr = clock.lap()
    w_gr, i_gr = cpu_search(wg, wr, 2)
    t_gr = clock.lap()
    base = t_feat + t_w
    rows += [
        ("w-max", sc.max_similarity(w_rg), base + t_rg),
        ("w-ratio", sc.knn_log_ratio(w_rg, w_rr, k), base + t_rg + t_rr),
        ("w-attr", sc.attribution_margin(w_gr, i_gr, n), base + t_gr),
    ]
    clock.lap()
    fused = sc.density_attribution_score(w_rg, w_rr, w_gr, i_gr, k)
    rows.append(("w-fused = density_attribution_score", fused, base + t_rg + t_rr + t_gr + clock.lap()))
    print(f"   (features {t_feat:.2f}s, whitening fit+apply {t_w:.2f}s, searches {t_rg + t_rr + t_gr:.2f}s)")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, epilog=DETAILS, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_folder_arguments(ap)
    ap.add_argument("--size", type=int, default=64, help="decode size (pipeline default 64; 28 = native)")
    ap.add_argument("--side", type=int, default=32, help="thumbnail side (min(size, side))")
    args = ap.parse_args()
    summary: dict[str, list[float]] = {}
    for folder in folder_paths(args):
        t = time.perf_counter()
        bench = load_bench(folder, args.size)
        t_dec = time.perf_counter() - t
        n, k = len(bench.real), sc.default_k(len(bench.real))
        print(
            f"== {bench.name}  size {args.size} side {min(args.size, args.side)}  "
            f"N={n} M={len(bench.generated)} "
            f"K={k}  decode {t_dec:.1f}s"
        )
        for name, scores, wall in folder_rows(bench.real, bench.generated, args.side):
            m = evaluate(bench.y, scores)
            summary.setdefault(name, []).append(m["auc"])
            print(fmt(name, m, wall))
    print("== mean AUC over folders")
    for name, aucs in summary.items():
        print(f"{name:42s} {np.mean(aucs):.4f}")


if __name__ == "__main__":
    main()
