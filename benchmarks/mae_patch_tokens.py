"""MAE patch tokens in place of the paper's global vector: alone, density-scored, whitened, fused."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from bench_data import LOCAL_BENCH, add_folder_arguments, folder_paths, load_bench
from bench_metrics import evaluate
from whitened_recipe import default_score, fused_score, neighbours, whiten

from synthaudit.models import score as sc
from synthaudit.models.index import search
from synthaudit.models.mae import MaskedAutoencoder
from synthaudit.models.pretrain import (
    PretrainConfig,
    load_checkpoint,
    pretrain_mae,
    save_checkpoint,
    to_model_input,
)

DETAILS = """\
Per folder the MAE (preset mae_tiny_patch8_64: 64 patches of 8x8 at 64 px, D = 192) is pretrained once on
the audit's own images (real + generated, no labels) with a budget of --images-seen images, cached under
--cache. Variants, declared before the first run (labels only score):
  a  global      mean of the patch tokens, max cosine (the paper's recipe)
  b  aligned     mean over the 64 positions of cos(r_p, g_p), max over the --prefilter generated images
                 nearest by the global cosine, and exact (= max cosine of the concatenated per-patch-
                 normalised tokens)
  c  concat      raw tokens concatenated (12,288-d), one L2 norm, max cosine
  d  ratio       knn_log_ratio (K = 1 % of N) and density_attribution_score on the b and c vectors
  f  whitened    the default's recipe on the whitened b vectors
  e  fusion      rank_fuse of the shipped default with a, with d (b ratio) and with f
  for f in fmnist-ddpm-dev fmnist-ddpm-dev-hard; do
    nice -n 10 .venv/bin/python benchmarks/mae_patch_tokens.py --folders $f; done
Control: the same with --images-seen 256 (2 training steps: an essentially untrained MAE)."""

BATCH = 200


def tokens(model: MaskedAutoencoder, images: np.ndarray) -> np.ndarray:
    """uint8 [N, S, S] -> per-patch tokens float32 [N, L, D]."""
    st = model.normalisation
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), BATCH):
            x = to_model_input(
                torch.from_numpy(images[i : i + BATCH]), model.config.img_size, st["mean"], st["std"]
            )
            out.append(model.patch_features(x).float().numpy())
    return np.concatenate(out)


def l2(x: np.ndarray) -> np.ndarray:
    """L2-normalise along the last axis."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def pretrained(images: np.ndarray, checkpoint: Path, images_seen: int) -> tuple[MaskedAutoencoder, dict, str]:
    """The MAE pretrained on images (cached at checkpoint), its metadata, and a note when it was cached."""
    if checkpoint.exists():
        model, meta = load_checkpoint(checkpoint, "cpu")
        return model, meta, " (cached checkpoint; time is from the original run)"
    t = time.perf_counter()
    model, losses = pretrain_mae(images, PretrainConfig(device="cpu", images_seen=images_seen))
    meta = {
        "t_pre": time.perf_counter() - t,
        "steps": len(losses),
        "images_seen_actual": int(model.images_seen),
        "last_loss": float(np.mean(losses[-10:])),
    }
    checkpoint.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(model, checkpoint, extra=meta)
    return model, meta, ""


def token_rows(tr: np.ndarray, tg: np.ndarray, prefilter: int) -> tuple[list, dict[str, np.ndarray]]:
    """Rows a-d and f as (name, scores, wall), and the scores e fuses (a, d, f)."""
    n, m = len(tr), len(tg)
    L, D = tr.shape[1:]
    k = sc.default_k(n)
    rows: list[tuple[str, np.ndarray, float | None]] = []
    t = time.perf_counter()
    s_glob, i_glob = search(l2(tr.mean(1)), l2(tg.mean(1)), prefilter, device="cpu")
    dt = time.perf_counter() - t
    s_a = s_glob[:, 0].astype(np.float64)
    rows.append(("a  global (mean token), max cos [paper]", s_a, dt))
    t = time.perf_counter()
    pr, pg = l2(tr), l2(tg)  # per-patch normalised
    s_b50 = np.empty(n)
    for i in range(0, n, 100):
        s_b50[i : i + 100] = np.einsum("bld,bkld->bk", pr[i : i + 100], pg[i_glob[i : i + 100]]).max(1) / L
    rows.append((f"b  aligned patches, top-{prefilter} prefilter", s_b50, dt + time.perf_counter() - t))
    t = time.perf_counter()
    br, bg = l2(pr.reshape(n, L * D)), l2(pg.reshape(m, L * D))
    nb = neighbours(br, bg, k)
    t_b = time.perf_counter() - t
    s_b = nb.rg_sims[:, 0].astype(np.float64)
    rows.append(("b  aligned patches, exact (all generated)", s_b, t_b))
    print(
        f"   check: exact >= prefiltered for {np.mean(s_b >= s_b50 - 1e-4):.3f} of images; "
        f"prefilter found the exact max for {np.mean(np.abs(s_b - s_b50) < 1e-4):.3f}"
    )
    t = time.perf_counter()
    nc = neighbours(l2(tr.reshape(n, L * D)), l2(tg.reshape(m, L * D)), k)
    t_c = time.perf_counter() - t
    rows.append(("c  raw tokens concatenated, max cos", nc.rg_sims[:, 0].astype(np.float64), t_c))
    for tag, nbrs, tb in (("b", nb, t_b), ("c", nc, t_c)):
        t = time.perf_counter()
        ratio = sc.knn_log_ratio(nbrs.rg_sims, nbrs.rr_sims, k)
        rows.append((f"d  {tag}-vectors, knn_log_ratio K={k}", ratio, tb + time.perf_counter() - t))
        t = time.perf_counter()
        rows.append(
            (
                f"d  {tag}-vectors, density_attribution_score",
                fused_score(nbrs, k),
                tb + time.perf_counter() - t,
            )
        )
        if tag == "b":
            s_d = ratio
    t = time.perf_counter()
    wr, wg = whiten(br, bg)
    print(f"   (whitening fit+apply on {L * D}-d: {time.perf_counter() - t:.0f}s)")
    nw = neighbours(wr, wg, k)
    s_f = fused_score(nw, k)
    t_f = time.perf_counter() - t
    rows.append(
        (f"f  whitened b-vectors, knn_log_ratio K={k}", sc.knn_log_ratio(nw.rg_sims, nw.rr_sims, k), t_f)
    )
    rows.append(("f  whitened b-vectors, density_attribution_score", s_f, t_f))
    return rows, {"a": s_a, "d": s_d, "f": s_f}


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, epilog=DETAILS, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_folder_arguments(ap)
    ap.add_argument(
        "--images-seen", type=int, default=16_000, help="MAE pretraining budget (default %(default)s)"
    )
    ap.add_argument(
        "--prefilter", type=int, default=50, help="generated candidates of variant b (default %(default)s)"
    )
    ap.add_argument(
        "--size",
        type=int,
        default=28,
        help="decode size of the MAE's images (default 28, the DDPM folders' native side; the MAE "
        "resizes to 64); the default is recomputed at 64 as the audit does",
    )
    ap.add_argument(
        "--cache",
        type=Path,
        default=LOCAL_BENCH / "mae-patch-tokens",
        help="folder of the pretrained checkpoints (default %(default)s)",
    )
    ap.add_argument("--threads", type=int, default=2, help="torch CPU threads (default %(default)s)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()
    for folder in folder_paths(args):
        t_folder = time.perf_counter()
        bench = load_bench(folder, args.size)
        n, k = len(bench.real), sc.default_k(len(bench.real))
        checkpoint = args.cache / f"mae_{bench.name}_{args.images_seen}.safetensors"
        model, meta, cached = pretrained(
            np.concatenate([bench.real, bench.generated]), checkpoint, args.images_seen
        )
        print(
            f"== {bench.name}  N={n} M={len(bench.generated)} K={k}  pretrain {float(meta['t_pre']):.0f}s, "
            f"{int(meta['steps'])} steps, {int(meta['images_seen_actual'])} images seen "
            f"(budget {args.images_seen}), "
            f"loss(last 10) {float(meta['last_loss']):.3f}{cached}",
            flush=True,
        )
        t = time.perf_counter()
        tr, tg = tokens(model, bench.real), tokens(model, bench.generated)
        t_embed = time.perf_counter() - t
        rows, parts = token_rows(tr, tg, args.prefilter)
        t = time.perf_counter()
        at64 = load_bench(folder)
        assert at64.ids == bench.ids, "id order differs between decode sizes"
        s_def = default_score(at64.real, at64.generated)
        rows.append(("shipped default (w-fused, NCC pixels)", s_def, time.perf_counter() - t))
        rows.append(("e  fuse default + a (global max)", sc.rank_fuse([s_def, parts["a"]]), None))
        rows.append(("e  fuse default + d (b-vectors ratio)", sc.rank_fuse([s_def, parts["d"]]), None))
        rows.append(("e  fuse default + f (whitened b, fused)", sc.rank_fuse([s_def, parts["f"]]), None))
        print("| method | AUC | TPR@1%FPR | F1 (cv thr) | F1 (median) | scoring wall |")
        print("|---|---|---|---|---|---|")
        for name, scores, wall in rows:
            m = evaluate(bench.y, scores)
            ws = f"{wall:.1f} s" if wall is not None else "-"
            print(
                f"| {name} | {m['auc']:.3f} | {m['tpr1']:.3f} | {m['f1cv']:.3f} | {m['f1med']:.3f} | {ws} |"
            )
        print(f"   pretrain: {float(meta['t_pre']):.0f}s")
        print(f"   embed ({n + len(bench.generated)} images, patch tokens): {t_embed:.0f}s")
        print(f"   folder wall (this process): {time.perf_counter() - t_folder:.0f}s", flush=True)
    print(f"total wall (this process): {time.perf_counter() - t_all:.0f}s")


if __name__ == "__main__":
    main()
