"""Exp 11 (final table): baselines vs the winner, through the project's own pieces.

Images are loaded with models.io.load_images at --size (pipeline default 64; 28 = native), features are
per-image NCC pixel vectors at --side (min(size, side)), neighbours come from models.index.search (FAISS,
exact), scores from models/score.py. Methods:
  pixels        NCC pixels, max cosine to generated (the README sanity baseline)
  paper         MAE (models/pretrain.py defaults, CPU) global features, max cosine (from exp6's cache)
  ncc-ratio     unwhitened NCC pixels, knn_log_ratio(K = default_k(N))
  w-max         whitened NCC pixels, max cosine
  w-ratio       whitened NCC pixels, knn_log_ratio(K)
  w-attr        whitened NCC pixels, attribution_margin
  w-fused       rank_fuse(w-ratio, w-attr)  <- the winner (density_attribution_score)
Wall time: feature extraction + whitening fit + searches + scoring, excluding image decoding
(printed separately), torch/BLAS on the machine's cores (2 here).
Run: .venv/bin/python benchmarks/research/exp11_final.py --size 64 --side 32
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import BENCH, FOLDERS, evaluate, fmt

from models import score as sc
from models.index import search
from models.io import load_images
from models.results import read_labels_csv

ap = argparse.ArgumentParser()
ap.add_argument("--size", type=int, default=64)
ap.add_argument("--side", type=int, default=32)
args = ap.parse_args()


def thumbs(images: np.ndarray, side: int) -> np.ndarray:
    x = torch.from_numpy(images).float()[:, None] / 255
    if images.shape[-1] > side:
        x = F.interpolate(x, size=(side, side), mode="bilinear", antialias=True)
    return x[:, 0].numpy()


summary = {}
for f in FOLDERS:
    t = time.perf_counter()
    rs, gs = load_images(BENCH / f / "real", args.size), load_images(BENCH / f / "generated", args.size)
    t_dec = time.perf_counter() - t
    lab = read_labels_csv(BENCH / f / "labels.csv")
    y = np.array([lab[i] for i in rs.ids])
    real, gen = rs.images, gs.images
    N = len(real)
    K = sc.default_k(N)
    print(
        f"== {f}  size {args.size} side {min(args.size, args.side)}  N={N} M={len(gen)} K={K}  decode {t_dec:.1f}s"
    )
    rows = []

    t0 = time.perf_counter()
    fr, fg = sc.ncc_vectors(thumbs(real, args.side)), sc.ncc_vectors(thumbs(gen, args.side))
    t_feat = time.perf_counter() - t0
    t = time.perf_counter()
    s_rg, _ = search(fr, fg, K, device="cpu")
    t_s1 = time.perf_counter() - t
    rows.append(("pixels", sc.max_similarity(s_rg), t_feat + t_s1))
    t = time.perf_counter()
    s_rr, _ = search(fr, fr, K, device="cpu", exclude_self=True)
    rows.append(("ncc-ratio", sc.knn_log_ratio(s_rg, s_rr, K), t_feat + t_s1 + time.perf_counter() - t))

    cache = Path(f"/tmp/sa_mae_{f}.npz")
    if cache.exists():
        z = np.load(cache)
        t = time.perf_counter()
        m_rg, _ = search(z["Fr"], z["Fg"], 1, device="cpu")
        rows.append(
            (
                "paper (MAE, from exp6 cache)",
                sc.max_similarity(m_rg),
                float(z["t_pre"] + z["t_emb"]) + time.perf_counter() - t,
            )
        )

    t = time.perf_counter()
    wfit = sc.fit_whitening(np.concatenate([fr, fg]))
    wr, wg = sc.apply_whitening(fr, wfit), sc.apply_whitening(fg, wfit)
    t_w = time.perf_counter() - t
    t = time.perf_counter()
    w_rg, _ = search(wr, wg, K, device="cpu")
    t_rg = time.perf_counter() - t
    t = time.perf_counter()
    w_rr, _ = search(wr, wr, K, device="cpu", exclude_self=True)
    t_rr = time.perf_counter() - t
    t = time.perf_counter()
    w_gr, i_gr = search(wg, wr, 2, device="cpu")
    t_gr = time.perf_counter() - t
    base = t_feat + t_w
    rows.append(("w-max", sc.max_similarity(w_rg), base + t_rg))
    rows.append(("w-ratio", sc.knn_log_ratio(w_rg, w_rr, K), base + t_rg + t_rr))
    rows.append(("w-attr", sc.attribution_margin(w_gr, i_gr, N), base + t_gr))
    t = time.perf_counter()
    fused = sc.density_attribution_score(w_rg, w_rr, w_gr, i_gr, K)
    rows.append(
        ("w-fused = density_attribution_score", fused, base + t_rg + t_rr + t_gr + time.perf_counter() - t)
    )
    print(f"   (features {t_feat:.2f}s, whitening fit+apply {t_w:.2f}s, searches {t_rg + t_rr + t_gr:.2f}s)")
    for name, s, wall in rows:
        m = evaluate(y, s)
        summary.setdefault(name, []).append(m["auc"])
        print(fmt(name, m, wall))
print("== mean AUC over folders")
for name, v in summary.items():
    print(f"{name:42s} {np.mean(v):.4f}")
