"""Remediation by filtering: drop the generated images label-free rules flag, then audit what is left."""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from bench_data import add_folder_arguments, folder_paths

from synthaudit.models.config import AuditConfig
from synthaudit.models.methods import View
from synthaudit.models.metrics import roc_auc, tpr_at_fpr
from synthaudit.models.results import read_labels_csv
from synthaudit.models.stages import AuditInputs, load_neighbours, run_audit

DETAILS = """\
Per folder: the shipped default audit without labels (the `prior` rule decides half the real images used),
its whitened-NCC neighbours (neighbours.npz), four rules that flag generated images (g, its nearest real
image r*, nn(r) = similarity of r to its nearest other real image):
  attributed     r* was decided used
  closer         sim(g, r*) > nn(r*): g is closer to r* than any other real image is
  closer+used    both
  top1-of-used   g is the nearest generated image of some real image decided used
The flagged images are removed and the rest audited again with the default method and the raw-pixel attack
(`pixels`), each rule against dropping as many at random. Labels only score.
  .venv/bin/python benchmarks/remediation.py"""

VIEW = View("pixels_whitened")


def audit(
    real: Path, generated: Path, workdir: Path, method: str
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """ids, scores and decisions of an unlabelled audit (fresh work folder)."""
    shutil.rmtree(workdir, ignore_errors=True)
    outcome = run_audit(AuditInputs(real, generated), AuditConfig(method=method), workdir)
    ids = [r.id for r in outcome.rows]
    return ids, np.array([r.score for r in outcome.rows]), np.array([r.used for r in outcome.rows])


def flags(workdir: Path, used: np.ndarray) -> dict[str, np.ndarray]:
    """Per rule, which generated images it flags (the audit's own neighbours and decisions, no labels)."""
    nb = load_neighbours(workdir, (VIEW,))[VIEW.key]
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
    """Copy the kept generated images to a fresh folder."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    for name in names:
        shutil.copy2(source / f"{name}.png", dest / f"{name}.png")


def judge(real: Path, generated: Path, y: np.ndarray, work: Path) -> dict[str, float]:
    """AUC and TPR@1%FPR of the default and of the raw-pixel attack on (real, generated)."""
    out = {}
    for method in ("default", "pixels"):
        _, scores, _ = audit(real, generated, work / method, method)
        out[f"auc_{method}"] = roc_auc(y, scores)
        out[f"tpr1_{method}"] = tpr_at_fpr(y, scores)
    return out


def folder_rows(root: Path, work: Path, rng: np.random.Generator) -> tuple[list, int]:
    """(name, dropped, figures) per rule and its random control; the number of generated images."""
    labels = read_labels_csv(root / "labels.csv")
    ids, _, used = audit(root / "real", root / "generated", work / "full", "default")
    y = np.array([labels[i] for i in ids])
    gen_names = [str(i) for i in np.load(work / "full" / "images.npz")["generated_ids"]]
    rows = [("none (full set)", 0, judge(root / "real", root / "generated", y, work / "judge"))]
    for rule, flagged in flags(work / "full", used).items():
        kept = [name for name, f in zip(gen_names, flagged) if not f]
        keep_generated(root / "generated", kept, work / rule / "generated")
        rows.append(
            (rule, int(flagged.sum()), judge(root / "real", work / rule / "generated", y, work / rule))
        )
        chosen = set(rng.choice(len(gen_names), int(flagged.sum()), replace=False).tolist())
        control = work / f"random-{rule}"
        keep_generated(
            root / "generated", [n for i, n in enumerate(gen_names) if i not in chosen], control / "generated"
        )
        rows.append(
            (
                f"random, as many as {rule}",
                len(chosen),
                judge(root / "real", control / "generated", y, control),
            )
        )
    return rows, len(gen_names)


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, epilog=DETAILS, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_folder_arguments(ap)
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="where the audits and filtered sets go (default: a temporary folder, removed at the end)",
    )
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory(prefix="remediation-") as tmp:
        work = args.workdir or Path(tmp)
        for root in folder_paths(args):
            t0 = time.perf_counter()
            rows, n_gen = folder_rows(root, work / root.name, rng)
            print(f"\n{root.name} ({n_gen} generated; {time.perf_counter() - t0:.0f} s)\n")
            print(
                "| dropped by | generated dropped | AUC default | TPR@1%FPR default | AUC pixels "
                "| TPR@1%FPR pixels |"
            )
            print("|---|---:|---:|---:|---:|---:|")
            for name, n, m in rows:
                print(
                    f"| {name} | {n} ({100 * n / n_gen:.1f} %) | {m['auc_default']:.3f} | "
                    f"{m['tpr1_default']:.3f} | "
                    f"{m['auc_pixels']:.3f} | {m['tpr1_pixels']:.3f} |"
                )


if __name__ == "__main__":
    main()
