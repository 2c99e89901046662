"""The calibrated verdict of `synthaudit audit`, checked end to end on a benchmark folder with known labels.

Two steps around one ordinary audit (docs/benchmarks.md, "Calibrated verdicts"):

  ref    writes REF.csv: `id,0` rows for a seeded random 40 % of the folder's not-used images (the
         simulated hold-out; the same draw as `synthaudit bench`: models.bench.draw_reference, numpy
         default_rng(seed) over the sorted not-used ids). No used=1 row: the audit learns nothing else.
  score  reads the audit's results.csv and metrics.json, and scores the *other* images (role candidate)
         with the folder's labels: FDP (not-used flagged / flagged) and TPR (used flagged / used) at the
         audit's FDR; checks leakage p < 1e-6, FDP <= 0.1, TPR >= 0.85 (exit 1 when one fails).

  B=../shared/bench/fmnist-ddpm-dev
  .venv/bin/python benchmarks/calibrated_check.py ref --labels $B/labels.csv --out REF.csv
  .venv/bin/synthaudit audit --real $B/real --generated $B/generated --labels REF.csv --metrics m.json --out r.csv
  .venv/bin/python benchmarks/calibrated_check.py score --labels $B/labels.csv --results r.csv --metrics m.json

The labels are read only to draw the hold-out and to score; nothing else depends on them.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from synthaudit.models.bench import REFERENCE_SHARE, draw_reference
from synthaudit.models.results import read_labels_csv, read_results_csv, write_labels_csv


def cmd_ref(args: argparse.Namespace) -> int:
    labels = read_labels_csv(args.labels)
    reference = draw_reference(labels, args.share, args.seed)
    write_labels_csv(((image_id, 0) for image_id in reference), args.out)
    n_not_used = sum(v == 0 for v in labels.values())
    print(
        f"wrote {args.out}: {len(reference)} of {n_not_used} not-used images (seed {args.seed}) as the reference"
    )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    labels = read_labels_csv(args.labels)
    rows = [r for r in read_results_csv(args.results) if r.role == "candidate"]
    document = json.loads(args.metrics.read_text())
    leakage = document.get("leakage") or {}
    if not leakage:
        print("the audit was not calibrated: no leakage test in", args.metrics, file=sys.stderr)
        return 1
    flagged = [r for r in rows if r.used == 1]
    false = sum(labels[r.id] == 0 for r in flagged)
    used = sum(labels[r.id] == 1 for r in rows)
    found = sum(labels[r.id] == 1 for r in flagged)
    fdp = false / len(flagged) if flagged else 0.0
    tpr = found / used if used else float("nan")
    lower = leakage["used_count_lower_bound"]
    print(
        f"reference {leakage['n_reference']}, candidates {len(rows)} ({used} used, {len(rows) - used} not used)"
    )
    print(f"leakage p = {leakage['p_value']:.3g} ({leakage['test']}), detected {leakage['detected']}")
    print(f"at FDR {document['fdr']:g}: flagged {len(flagged)}, false {false}, FDP {fdp:.3f}, TPR {tpr:.3f}")
    print(
        f"used count lower bound {lower} (true {used}); used share estimate {leakage['used_share_estimate']:.3f}"
    )
    checks = {
        f"leakage p < {args.max_p:g}": leakage["p_value"] < args.max_p,
        f"FDP <= {args.max_fdp:g}": fdp <= args.max_fdp,
        f"TPR >= {args.min_tpr:g}": tpr >= args.min_tpr,
        "lower bound <= true used count": lower <= used,
    }
    for name, ok in checks.items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    return 0 if all(checks.values()) else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    ref = sub.add_parser("ref", help="write REF.csv: id,0 for a seeded share of the not-used images")
    ref.add_argument("--labels", type=Path, required=True)
    ref.add_argument("--out", type=Path, default=Path("REF.csv"))
    ref.add_argument("--share", type=float, default=REFERENCE_SHARE)
    ref.add_argument("--seed", type=int, default=0)
    ref.set_defaults(func=cmd_ref)
    score = sub.add_parser("score", help="FDP and TPR of the audit's candidates, and the checks")
    score.add_argument("--labels", type=Path, required=True)
    score.add_argument("--results", type=Path, required=True)
    score.add_argument("--metrics", type=Path, required=True)
    score.add_argument("--max-p", type=float, default=1e-6)
    score.add_argument("--max-fdp", type=float, default=0.1)
    score.add_argument("--min-tpr", type=float, default=0.85)
    score.set_defaults(func=cmd_score)
    args = ap.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
