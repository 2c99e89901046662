"""exp17: are exp13's whitened patch tokens of an UNTRAINED MAE a real gain over the default, across seeds?

exp13's control (2 training steps) scored 0.977 / 0.845 AUC (dev / hard) with whitened patch tokens
through the default's recipe, against the default's 0.974 / 0.819, one seed. Here: the same features
from a randomly initialised `mae_tiny_patch8_64` encoder (no training step at all) for seeds 0, 1, 2:
per-patch tokens (64 patches x 192) L2-normalised per patch, concatenated, whitened on real + generated,
then density_attribution_score (K = default_k(N)). Reported per seed, with the mean and the spread,
next to the default. Labels are used only to score; nothing is tuned.
Run: .venv/bin/python benchmarks/research/exp17_random_vit_tokens.py [--bench DIR --folders a,b]
(`--bench bench-local --folders fmnist-dcgan-2000,fmnist-dcgan-5000` for benchmarks/make_gan_bench.py's)
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, FOLDERS, evaluate  # noqa: E402

from models import score as sc  # noqa: E402
from models.index import search  # noqa: E402
from models.io import load_images  # noqa: E402
from models.mae import create_mae  # noqa: E402
from models.pretrain import normalisation_stats, to_model_input  # noqa: E402
from models.results import read_labels_csv  # noqa: E402
from exp16_patch_ncc import thumbs  # noqa: E402

def fused(real_f: np.ndarray, gen_f: np.ndarray) -> np.ndarray:
    w = sc.fit_whitening(np.concatenate([real_f, gen_f]))
    wr, wg = sc.apply_whitening(real_f, w), sc.apply_whitening(gen_f, w)
    k = sc.default_k(len(wr))
    rg, _ = search(wr, wg, k, device="cpu")
    rr, _ = search(wr, wr, k, device="cpu", exclude_self=True)
    gr, igr = search(wg, wr, 2, device="cpu")
    return sc.density_attribution_score(rg, rr, gr, igr, k)


def reduce(x: np.ndarray, how: str, seed: int) -> np.ndarray:
    """Token features [N, 64 * 192] made smaller before whitening: `none`, `jl2048` (a seeded Gaussian
    random projection to 2,048 dims) or `pool2` (mean of 2x2 neighbouring patch tokens: 16 x 192)."""
    if how == "none":
        return x
    if how == "jl2048":
        g = np.random.default_rng(seed + 7919)
        proj = g.standard_normal((x.shape[1], 2048), dtype=np.float32) / np.sqrt(2048)
        y = x @ proj
    elif how == "pool2":
        t = x.reshape(len(x), 8, 8, -1)
        y = t.reshape(len(x), 4, 2, 4, 2, t.shape[-1]).mean(axis=(2, 4)).reshape(len(x), -1)
    else:
        raise ValueError(how)
    return y / np.linalg.norm(y, axis=1, keepdims=True)


def random_tokens(seed: int, real: np.ndarray, gen: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    torch.manual_seed(seed)
    model = create_mae("mae_tiny_patch8_64").eval()
    stats = normalisation_stats(np.concatenate([real, gen]))

    def tok(images: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), 200):
                x = to_model_input(torch.from_numpy(images[i : i + 200]), model.config.img_size, stats["mean"], stats["std"])
                t = model.patch_features(x).float().numpy()
                t = t / np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-12)
                out.append(t.reshape(len(t), -1))
        x = np.concatenate(out)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return tok(real), tok(gen)


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--bench", type=Path, default=BENCH)
    ap.add_argument("--folders", default=",".join(FOLDERS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--fusion", action="store_true", help="also rank_fuse(default, tokens) per seed")
    ap.add_argument("--reduce", default="none", choices=["none", "jl2048", "pool2"])
    args = ap.parse_args()
    torch.set_num_threads(2)
    print("| folder | features | AUC | TPR@1%FPR | F1 (cv) | F1 (median) | wall |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for folder in args.folders.split(","):
        root = args.bench / folder
        rs, gs = load_images(root / "real", 64), load_images(root / "generated", 64)
        labels = read_labels_csv(root / "labels.csv")
        y = np.array([labels[i] for i in rs.ids])
        t = time.perf_counter()
        default = fused(sc.ncc_vectors(thumbs(rs.images, 32)), sc.ncc_vectors(thumbs(gs.images, 32)))
        m = evaluate(y, default)
        print(f"| {folder} | default | {m['auc']:.3f} | {m['tpr1']:.3f} | {m['f1cv']:.3f} | {m['f1med']:.3f} | {time.perf_counter() - t:.0f} s |", flush=True)
        aucs = []
        for seed in (int(x) for x in args.seeds.split(",")):
            t = time.perf_counter()
            tr, tg = random_tokens(seed, rs.images, gs.images)
            tokens = fused(reduce(tr, args.reduce, seed), reduce(tg, args.reduce, seed))
            m = evaluate(y, tokens)
            aucs.append(m["auc"])
            print(f"| {folder} | random ViT tokens ({args.reduce}), seed {seed} | {m['auc']:.3f} | {m['tpr1']:.3f} | {m['f1cv']:.3f} | {m['f1med']:.3f} | {time.perf_counter() - t:.0f} s |", flush=True)
            if args.fusion:
                m = evaluate(y, sc.rank_fuse([default, tokens]))
                print(f"| {folder} | rank_fuse(default, tokens seed {seed}) | {m['auc']:.3f} | {m['tpr1']:.3f} | {m['f1cv']:.3f} | {m['f1med']:.3f} | |", flush=True)
        print(f"| {folder} | random ViT tokens, mean (min-max) | {np.mean(aucs):.3f} ({min(aucs):.3f}-{max(aucs):.3f}) | | | | |", flush=True)


if __name__ == "__main__":
    main()
