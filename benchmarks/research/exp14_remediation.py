"""exp14: remediation. Which generated images should a hospital drop before sharing, so that the rest no
longer gives its training images away? Label-free flagging rules, judged by auditing what is left.

For each folder: run the shipped default audit (no labels: the `prior` rule decides half the real images
used), read its whitened-NCC neighbours (models/stages.py `neighbours.npz`), flag generated images by
each rule below, copy the remaining generated images to a new folder, and audit again. What is left is
judged by the AUC (labels used only here) of the default method AND of the independent raw-pixel
attack (`pixels`), and compared with dropping the same number of generated images at random.

Rules (g = a generated image, r* = its nearest real image, nn(r) = similarity of real r to its nearest
other real image):
  attributed        r* was decided used
  closer            sim(g, r*) > nn(r*): g is closer to r* than any other real image is (any r*)
  closer+used       both
  top1-of-used      g is the nearest generated image of some real image decided used

Run: .venv/bin/python benchmarks/research/exp14_remediation.py
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import BENCH, FOLDERS, roc_auc, tpr_at_fpr  # noqa: E402

from models.config import AuditConfig  # noqa: E402
from models.methods import View  # noqa: E402
from models.results import read_labels_csv  # noqa: E402
from models.stages import AuditInputs, load_neighbours, run_audit  # noqa: E402

WORK = Path("/tmp/exp14")


def audit(real: Path, generated: Path, workdir: Path, method: str) -> tuple[list[str], np.ndarray, np.ndarray]:
    """ids, scores and decisions of an unlabelled audit (fresh work folder)."""
    shutil.rmtree(workdir, ignore_errors=True)
    outcome = run_audit(AuditInputs(real, generated), AuditConfig(method=method), workdir)
    ids = [r.id for r in outcome.rows]
    return ids, np.array([r.score for r in outcome.rows]), np.array([r.used for r in outcome.rows])


def flags(workdir: Path, used: np.ndarray) -> dict[str, np.ndarray]:
    nb = load_neighbours(workdir, (View("pixels_whitened"),))[View("pixels_whitened").key]
    nearest_real, sim_g = nb.gr_idx[:, 0], nb.gr_sims[:, 0]
    closer = sim_g > nb.rr_sims[nearest_real, 0]
    attributed = used[nearest_real] == 1
    top1 = np.zeros(len(nearest_real), bool)
    top1[nb.rg_idx[used == 1, 0]] = True
    return {
        "attributed": attributed,
        "closer": closer,
        "closer+used": closer & attributed,
        "top1-of-used": top1,
    }


def keep_generated(source: Path, names: list[str], dest: Path) -> None:
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in names:
        shutil.copy2(source / f"{name}.png", dest / f"{name}.png")


def judge(real: Path, generated: Path, y: np.ndarray, work: Path) -> dict[str, float]:
    out = {}
    for method in ("default", "pixels"):
        _, scores, _ = audit(real, generated, work / method, method)
        out[f"auc_{method}"] = roc_auc(y, scores)
        out[f"tpr1_{method}"] = tpr_at_fpr(y, scores)
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    for folder in FOLDERS:
        root = BENCH / folder
        labels = read_labels_csv(root / "labels.csv")
        t0 = time.perf_counter()
        ids, _, used = audit(root / "real", root / "generated", WORK / folder / "full", "default")
        y = np.array([labels[i] for i in ids])
        gen_names = [str(i) for i in np.load(WORK / folder / "full" / "images.npz")["generated_ids"]]
        rules = flags(WORK / folder / "full", used)
        rows = [("none (full set)", 0, judge(root / "real", root / "generated", y, WORK / folder / "judge"))]
        for rule, flagged in rules.items():
            kept = [n for n, f in zip(gen_names, flagged) if not f]
            keep_generated(root / "generated", kept, WORK / folder / rule / "generated")
            rows.append((rule, int(flagged.sum()), judge(root / "real", WORK / folder / rule / "generated", y, WORK / folder / rule)))
            chosen = rng.choice(len(gen_names), int(flagged.sum()), replace=False)
            kept_random = [n for i, n in enumerate(gen_names) if i not in set(chosen.tolist())]
            keep_generated(root / "generated", kept_random, WORK / folder / f"random-{rule}" / "generated")
            rows.append(
                (
                    f"random, as many as {rule}",
                    len(chosen),
                    judge(root / "real", WORK / folder / f"random-{rule}" / "generated", y, WORK / folder / f"random-{rule}"),
                )
            )
        print(f"\n{folder} ({len(gen_names)} generated; {time.perf_counter() - t0:.0f} s)\n")
        print("| dropped by | generated dropped | AUC default | TPR@1%FPR default | AUC pixels | TPR@1%FPR pixels |")
        print("|---|---:|---:|---:|---:|---:|")
        for name, n, m in rows:
            print(
                f"| {name} | {n} ({100 * n / len(gen_names):.1f} %) | {m['auc_default']:.3f} | "
                f"{m['tpr1_default']:.3f} | {m['auc_pixels']:.3f} | {m['tpr1_pixels']:.3f} |"
            )


if __name__ == "__main__":
    main()
