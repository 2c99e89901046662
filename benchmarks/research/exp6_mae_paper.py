"""Exp 6: the `paper` baseline, a small MAE pretrained (models/pretrain.py defaults, CPU budget) on the
audit's own images (real+generated), global (mean patch token) features, cosine, max similarity to
generated; plus the same features scored with the kNN density ratio, and whitened. Features are cached
in /tmp/sa_mae_<folder>.npz (delete to re-train).
Run: .venv/bin/python benchmarks/research/exp6_mae_paper.py
"""

import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from common import FOLDERS, evaluate, fmt, knn_dists, load_folder

from models.pretrain import PretrainConfig, pretrain_mae, to_model_input

torch.set_num_threads(2)


def embed(model, imgs, bs=256):
    st = model.normalisation
    out = []
    with torch.no_grad():
        for i in range(0, len(imgs), bs):
            x = to_model_input(
                torch.from_numpy(imgs[i : i + bs]), model.config.img_size, st["mean"], st["std"]
            )
            out.append(model.global_features(x).float().numpy())
    return np.concatenate(out)


for f in FOLDERS:
    real, gen, y = load_folder(f)
    cache = Path(f"/tmp/sa_mae_{f}.npz")
    if not cache.exists():
        t = time.perf_counter()
        model, losses = pretrain_mae(np.concatenate([real, gen]), PretrainConfig(device="cpu"))
        t_pre = time.perf_counter() - t
        t = time.perf_counter()
        Fr, Fg = embed(model, real), embed(model, gen)
        t_emb = time.perf_counter() - t
        np.savez(cache, Fr=Fr, Fg=Fg, t_pre=t_pre, t_emb=t_emb, steps=len(losses), last=losses[-1])
    z = np.load(cache)
    Fr, Fg = z["Fr"], z["Fg"]
    print(
        "==",
        f,
        f"pretrain {float(z['t_pre']):.0f}s ({int(z['steps'])} steps, loss {float(z['last']):.3f}), embed {float(z['t_emb']):.0f}s",
    )
    dg, dr = knn_dists(Fr, Fg, 20, "cos")
    print(fmt("paper: MAE global cos max", evaluate(y, -dg[:, 0])))
    for K in (1, 10):
        print(
            fmt(f"MAE global ratio K{K}", evaluate(y, np.log(dr[:, :K]).mean(1) - np.log(dg[:, :K]).mean(1)))
        )
    X = np.concatenate([Fr, Fg])
    mu = X.mean(0)
    _, Sv, Vt = np.linalg.svd(X - mu, full_matrices=False)
    var = Sv**2 / len(X)
    P = Vt / np.sqrt(var + 1e-3 * var[0])[:, None]
    dg, dr = knn_dists((Fr - mu) @ P.T, (Fg - mu) @ P.T, 20, "cos")
    print(fmt("MAE whitened cos max", evaluate(y, -dg[:, 0])))
    for K in (1, 10):
        print(
            fmt(
                f"MAE whitened ratio K{K}", evaluate(y, np.log(dr[:, :K]).mean(1) - np.log(dg[:, :K]).mean(1))
            )
        )
