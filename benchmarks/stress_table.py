"""The stress suite's table: for every folder of a suite built by benchmarks/make_stress_bench.py and every
method, AUC and TPR at 1 % FPR (models.bench.run_bench: the audit runs without labels; labels only score it).

`paper` pretrains its MAE once, on the `identity-none` folder (its real + generated images), and reuses that
encoder for every other folder (`--checkpoint`): a fresh pretraining per folder would cost 5-20 min each on 2
CPU cores. The real images and the novel half of the generated images are the same in every folder, so the
encoder sees nearly the same images either way; the table says so.

  .venv/bin/python benchmarks/stress_table.py bench-local/stress-fmnist --methods default,density_attribution_vit,paper,pixels \\
      --output bench-local/stress-fmnist.json
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synthaudit.models.bench import run_bench
from synthaudit.models.config import AuditConfig
from synthaudit.models.stages import read_alignment
from synthaudit.models.workdir import FITTED_ENCODER_FILES

ORDER = (
    "identity",
    "translate",
    "rotate",
    "scale",
    "elastic",
    "gamma",
    "noise",
    "blur",
    "jpeg",
    "crop",
    "blend",
    "combined",
)
STRENGTH_ORDER = ("none", "low", "medium", "high")


def folder_key(path: Path) -> tuple[int, int]:
    name, _, strength = path.name.partition("-")
    return (
        ORDER.index(name) if name in ORDER else 99,
        STRENGTH_ORDER.index(strength) if strength in STRENGTH_ORDER else 99,
    )


def format_table(rows: list[dict], methods: list[str]) -> str:
    by = {(r["folder"], r["method"]): r for r in rows}
    folders = sorted({r["folder"] for r in rows}, key=lambda f: folder_key(Path(f)))
    head = "| transform | strength | " + " | ".join(f"{m}: AUC / TPR@1%FPR" for m in methods) + " |"
    lines = [head, "|---|---|" + "---:|" * len(methods)]
    for f in folders:
        name, _, strength = f.partition("-")
        cells = []
        for m in methods:
            r = by.get((f, m))
            cells.append(f"{r['auc']:.3f} / {r['tpr_at_1pct_fpr']:.3f}" if r else "–")
        lines.append(f"| {name} | {strength} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "suite", type=Path, help="folder holding the stress folders (identity-none, rotate-medium, ...)"
    )
    ap.add_argument("--methods", default="default,density_attribution_vit,paper,pixels")
    ap.add_argument(
        "--only", default=None, help="comma-separated folder names; default every folder of the suite"
    )
    ap.add_argument(
        "--workdir",
        type=Path,
        default=None,
        help="keeps the paper's pretrained MAE (default SUITE-work); other work folders are temporary",
    )
    ap.add_argument("--output", type=Path, default=None, help="JSON rows (appended to when it exists)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--alignment",
        default="auto",
        help="the audits' alignment setting (auto, grid = before issue 23, off)",
    )
    args = ap.parse_args()
    methods = args.methods.split(",")
    folders = sorted((p for p in args.suite.iterdir() if (p / "labels.csv").exists()), key=folder_key)
    if args.only:
        wanted = set(args.only.split(","))
        folders = [p for p in folders if p.name in wanted]
    work = args.workdir or args.suite.with_name(args.suite.name + "-work")
    rows: list[dict] = []
    if args.output and args.output.exists():
        rows = json.loads(args.output.read_text())
    done = {(r["folder"], r["method"]) for r in rows}
    base = AuditConfig(seed=args.seed, device="cpu", alignment=args.alignment)
    for method in methods:
        config = base
        if method == "paper":  # one MAE, pretrained on the control folder, for every folder
            identity = args.suite / "identity-none"
            checkpoint = work / "pretrain" / "identity-none-paper" / FITTED_ENCODER_FILES["mae"]
            if not checkpoint.exists():
                run_bench([identity], ["paper"], base, work / "pretrain", redraws=0)
            config = replace(base, checkpoint=str(checkpoint))
        for folder in folders:
            if (folder.name, method) in done:
                continue
            started = time.perf_counter()
            audits = (
                work / f"audits-{args.alignment}"
            )  # kept: alignment.json says whether the alignment gate fired
            shutil.rmtree(audits / f"{folder.name}-{method}", ignore_errors=True)  # never resume an older run
            row = run_bench([folder], [method], config, audits, redraws=0)[0]
            row["method"] = method
            gate = read_alignment(audits / f"{folder.name}-{method}")
            views = (gate or {}).get("views", {})
            row["alignment_share"] = max((v["share"] for v in views.values()), default=None)
            row["alignment_fired"] = any(v["fired"] for v in views.values())
            row["alignment_probe_fired"] = any(v.get("probe_fired", False) for v in views.values())
            rows.append(row)
            print(
                f"{folder.name:18s} {method:26s} auc {row['auc']:.3f}  tpr@1% {row['tpr_at_1pct_fpr']:.3f}  "
                f"gate {row['alignment_share'] if row['alignment_share'] is not None else '-'} "
                f"{'fired' if row['alignment_fired'] else 'off'}"
                f"{' probe fired' if row['alignment_probe_fired'] else ''} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
            if args.output:
                args.output.write_text(json.dumps(rows, indent=1, default=str) + "\n")
    print()
    print(format_table(rows, methods))


if __name__ == "__main__":
    main()
