"""Whitened patch tokens of an untrained, seeded ViT through the default's recipe, per seed."""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from bench_data import add_folder_arguments, folder_paths, load_bench
from bench_metrics import evaluate
from whitened_recipe import default_score, recipe_score

from synthaudit.models import score as sc
from synthaudit.models.encoders.vit_tokens import random_vit
from synthaudit.models.pretrain import normalisation_stats, to_model_input

DETAILS = """\
Features: a randomly initialised `mae_tiny_patch8_64` encoder (no training step) per seed; its 64 patch
tokens x 192, each L2-normalised, concatenated (12,288-d), optionally reduced (--reduce), whitened on
real + generated, then density_attribution_score (K = 1 % of N). Labels only score; nothing is tuned.
  .venv/bin/python benchmarks/random_vit_tokens.py
  .venv/bin/python benchmarks/random_vit_tokens.py \\
      --bench bench-local --folders fmnist-dcgan-2000,fmnist-dcgan-5000
  .venv/bin/python benchmarks/random_vit_tokens.py --seeds 0 --fusion --reduce jl2048"""

BATCH = 200


def reduce(x: np.ndarray, how: str, seed: int) -> np.ndarray:
    """Token features [N, 64 * 192] made smaller before whitening: `none`, `jl2048` (a seeded Gaussian random
    projection to 2,048 dims) or `pool2` (mean of 2x2 neighbouring patch tokens: 16 x 192)."""
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
    """Per-patch-normalised, concatenated tokens of the seed's untrained ViT, for real and generated."""
    model = random_vit(seed)
    stats = normalisation_stats(np.concatenate([real, gen]))

    def tokens(images: np.ndarray) -> np.ndarray:
        out = []
        with torch.inference_mode():
            for i in range(0, len(images), BATCH):
                batch = torch.from_numpy(images[i : i + BATCH])
                x = to_model_input(batch, model.config.img_size, stats["mean"], stats["std"])
                t = model.patch_features(x).float().numpy()
                t = t / np.maximum(np.linalg.norm(t, axis=-1, keepdims=True), 1e-12)
                out.append(t.reshape(len(t), -1))
        x = np.concatenate(out)
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    return tokens(real), tokens(gen)


def row(folder: str, features: str, m: dict[str, float] | None, wall: str, auc: str | None = None) -> str:
    """One markdown row of the table."""
    cells = (
        [f"{m['auc']:.3f}", f"{m['tpr1']:.3f}", f"{m['f1cv']:.3f}", f"{m['f1med']:.3f}"]
        if m
        else [auc or "", "", "", ""]
    )
    return f"| {folder} | {features} | " + " | ".join(cells) + f" | {wall} |"


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, epilog=DETAILS, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_folder_arguments(ap)
    ap.add_argument("--seeds", default="0,1,2", help="comma-separated ViT seeds (default %(default)s)")
    ap.add_argument("--fusion", action="store_true", help="also rank_fuse(default, tokens) per seed")
    ap.add_argument("--reduce", default="none", choices=["none", "jl2048", "pool2"])
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default %(default)s)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print("| folder | features | AUC | TPR@1%FPR | F1 (cv) | F1 (median) | wall |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for folder in folder_paths(args):
        bench = load_bench(folder)
        t = time.perf_counter()
        default = default_score(bench.real, bench.generated)
        print(
            row(bench.name, "default", evaluate(bench.y, default), f"{time.perf_counter() - t:.0f} s"),
            flush=True,
        )
        aucs = []
        for seed in (int(s) for s in args.seeds.split(",")):
            t = time.perf_counter()
            tr, tg = random_tokens(seed, bench.real, bench.generated)
            tokens = recipe_score(reduce(tr, args.reduce, seed), reduce(tg, args.reduce, seed))
            m = evaluate(bench.y, tokens)
            aucs.append(m["auc"])
            print(
                row(
                    bench.name,
                    f"random ViT tokens ({args.reduce}), seed {seed}",
                    m,
                    f"{time.perf_counter() - t:.0f} s",
                ),
                flush=True,
            )
            if args.fusion:
                fused = evaluate(bench.y, sc.rank_fuse([default, tokens]))
                print(row(bench.name, f"rank_fuse(default, tokens seed {seed})", fused, ""), flush=True)
        spread = f"{np.mean(aucs):.3f} ({min(aucs):.3f}-{max(aucs):.3f})"
        print(row(bench.name, "random ViT tokens, mean (min-max)", None, "", spread), flush=True)


if __name__ == "__main__":
    main()
