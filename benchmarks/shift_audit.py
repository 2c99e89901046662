"""Audit every shifted-reference case of make_shift_bench.py with the CLI and print the docs table.

For each case folder C: `synthaudit audit --real C/real --reference C/reference --generated C/generated
--workdir W --metrics W/m.json --out W/r.csv`, then from W: the reference check (metrics.json), the verdict,
the leakage p without the check (models.calibration.leakage_test on scores.npz: candidates vs reference),
and the check's own cost (check_reference re-run on the decoded pool, timed). --timing-only times
check_reference on N random 256x256 uint8 images (40 % reference) and exits.

Run: .venv/bin/python benchmarks/shift_audit.py bench-local/shift/* --work bench-local/shift-work
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from synthaudit.models.calibration import leakage_test
from synthaudit.models.reference_check import check_reference
from synthaudit.models.stages import load_decoded
from synthaudit.models.stages.decode import load_reference_mask


def _f(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def audit(case: Path, work: Path) -> dict:
    work.mkdir(parents=True, exist_ok=True)
    cmd = [
        ".venv/bin/synthaudit", "audit", "--real", str(case / "real"), "--reference", str(case / "reference"),
        "--generated", str(case / "generated"), "--workdir", str(work / "wd"),
        "--metrics", str(work / "m.json"), "--out", str(work / "r.csv"),
    ]  # fmt: skip
    started = time.perf_counter()
    (work / "m.json").unlink(missing_ok=True)
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dropped = False
    if not (work / "m.json").exists() and "--drop-reference-duplicates" in proc.stderr:
        # near-identical slices on both sides (a slab-correlated split): the audit refuses them; drop them
        # from the candidates as the error message offers, and say so in the table
        shutil.rmtree(work / "wd", ignore_errors=True)  # a work folder keeps its first configuration
        proc = subprocess.run([*cmd, "--drop-reference-duplicates"], capture_output=True, text=True)
        dropped = True
    total = time.perf_counter() - started
    if not (work / "m.json").exists():
        print(f"{case}: the audit wrote no metrics (rc {proc.returncode}): {proc.stderr[-600:]}", flush=True)
        return {"case": case.name, "failed": proc.stderr[-600:]}
    m = json.loads((work / "m.json").read_text())
    with np.load(work / "wd" / "scores.npz") as s:
        scores, ref = np.asarray(s["scores"], float), np.asarray(s["from_reference"], bool)
    no_check = leakage_test(scores[~ref], scores[ref])
    pool, _ = load_decoded(work / "wd")
    mask = load_reference_mask(work / "wd")
    started = time.perf_counter()
    check_reference(pool.images, mask)
    t_check = time.perf_counter() - started
    rc, leak = m["reference_check"], m["leakage"]
    return {
        "case": case.name,
        "n_ref": int(mask.sum()),
        "n_cand": int((~mask).sum()),
        "auc": rc["statistic"],
        "p": rc["p_value"],
        "passed": rc["passed"],
        "units": rc["units"],
        "test": "classifier"
        if rc.get("classifier_p_value") is not None
        else (f"paired ({rc['pairs']} pairs)" if rc.get("paired_p_value") is not None else "not made"),
        "verdict": leak["verdict"],
        "p_without_check": no_check.p_value,
        "verdict_without_check": "detected" if no_check.detected else "not_detected",
        "t_check": t_check,
        "t_audit": total,
        "cli_rc": proc.returncode,
        "dropped_duplicates": dropped,
        "cli_line": proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr[-300:],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("cases", type=Path, nargs="*")
    ap.add_argument("--work", type=Path, default=Path("bench-local/shift-work"))
    ap.add_argument("--output", type=Path, default=None)
    ap.add_argument(
        "--timing-only", type=int, default=0, help="time check_reference on N random 256x256 images"
    )
    args = ap.parse_args()
    if args.timing_only:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, size=(args.timing_only, 256, 256), dtype=np.uint8)
        is_ref = np.zeros(len(images), bool)
        is_ref[rng.choice(len(images), int(0.4 * len(images)), replace=False)] = True
        started = time.perf_counter()
        result, _ = check_reference(images, is_ref)
        took = time.perf_counter() - started
        print(
            f"check_reference on {len(images)} random 256x256: {took:.1f} s, p {result.p_value}, AUC {result.statistic}"
        )
        return
    rows = [audit(c, args.work / c.name) for c in args.cases if (c / "reference").is_dir()]
    print(
        "| case | reference | candidates | units | test | check AUC | check p | passed | verdict | leakage p without the check | verdict without the check | check (s) | audit (s) |"
    )
    print("|---|---:|---:|---:|---|---:|---:|---|---|---:|---|---:|---:|")
    for r in [r for r in rows if "failed" not in r]:
        print(
            f"| {r['case']}{' (duplicates dropped)' if r['dropped_duplicates'] else ''} | {r['n_ref']} | {r['n_cand']} | {r['units']} | {r['test']} | {_f(r['auc'], '.3f')} | {_f(r['p'], '.2g')} | {r['passed']} | "
            f"{r['verdict']} | {r['p_without_check']:.2g} | {r['verdict_without_check']} | {r['t_check']:.1f} | {r['t_audit']:.1f} |"
        )
    for r in rows:
        if "failed" in r:
            print(f"{r['case']}: FAILED: {r['failed']}")
            continue
        print(f"{r['case']}: rc {r['cli_rc']}: {r['cli_line']}")
    if args.output:
        args.output.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
