"""exp19: can the audit tell from its own images (no labels) that its copies are misaligned?

For each generated image: d_id = whitened distance to its nearest real thumbnail (the default's view), d_aug =
the same over exp18's 9 versions of every real thumbnail (aug_small). A misaligned copy has d_aug << d_id;
an aligned copy or a novel image has d_aug close to d_id. Printed per folder: the quantiles of
d_aug / d_id over the generated images and the share below 0.5 / 0.7; then the default's and aug_small's AUC
and TPR@1%FPR (labels only score). A gate "use aug_small when that share is large" is worth building only
if the shares of the folders where aug_small loses and where it wins are far apart. `gated`: aug_small's
score when more than GATE_SHARE of the generated images have d_aug / d_id < GATE_RATIO, else the default's.

  .venv/bin/python benchmarks/research/exp19_alignment_gate.py FOLDER [FOLDER ...]
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import roc_auc, tpr_at_fpr  # noqa: E402
from exp18_alignment import aug_score, default_score, thumbs, versions, warp  # noqa: E402

from models import score as S  # noqa: E402
from models.io import load_images  # noqa: E402
from models.results import read_labels_csv  # noqa: E402


def ratios(real: np.ndarray, gen: np.ndarray, side: int = 32) -> np.ndarray:
    fr, fg = thumbs(real, side), thumbs(gen, side)
    w = S.fit_whitening(np.concatenate([fr, fg]))
    wr, wg = S.apply_whitening(fr, w), S.apply_whitening(fg, w)
    s_id = (wg @ wr.T).max(axis=1)
    s_aug = s_id.copy()
    for v in versions(real.shape[1], small=True)[1:]:
        wv = S.apply_whitening(thumbs(warp(real, *v), side), w)
        np.maximum(s_aug, (wg @ wv.T).max(axis=1), out=s_aug)
    floor = 1e-6  # an exact copy (distance 0 in both views) counts as ratio 1, not 0
    d_id = np.maximum(np.sqrt(np.clip(2 - 2 * s_id, 0, None)), floor)
    d_aug = np.maximum(np.sqrt(np.clip(2 - 2 * s_aug, 0, None)), floor)
    return d_aug / d_id


GATE_RATIO = 0.5  # a generated image "matches better misaligned" when a version halves its nearest distance
GATE_SHARE = 0.01  # aug_small is used when more than 1 % of the generated images do


def main() -> None:
    print("| folder | d_aug/d_id q10 / q50 | share < 0.5 | share < 0.7 | default AUC / TPR@1% | aug_small AUC / TPR@1% "
          "| gated AUC / TPR@1% |")
    print("|---|---|---:|---:|---|---|---|")
    for folder in map(Path, sys.argv[1:]):
        labels = read_labels_csv(folder / "labels.csv")
        rs = load_images(folder / "real", 64)
        gen = load_images(folder / "generated", 64).images
        y = np.array([labels[i] for i in rs.ids])
        r = ratios(rs.images, gen)
        d, a = default_score(rs.images, gen, 32), aug_score(rs.images, gen, 32, small=True)
        g = a if (r < GATE_RATIO).mean() > GATE_SHARE else d
        name = f"{folder.parent.name}/{folder.name}" if folder.parent.name.startswith("stress") else folder.name
        print(f"| {name} | {np.quantile(r, 0.1):.2f} / {np.quantile(r, 0.5):.2f} | {(r < 0.5).mean():.3f} | "
              f"{(r < 0.7).mean():.3f} | {roc_auc(y, d):.3f} / {tpr_at_fpr(y, d, 0.01):.3f} | "
              f"{roc_auc(y, a):.3f} / {tpr_at_fpr(y, a, 0.01):.3f} | {roc_auc(y, g):.3f} / {tpr_at_fpr(y, g, 0.01):.3f} |",
              flush=True)


if __name__ == "__main__":
    main()
