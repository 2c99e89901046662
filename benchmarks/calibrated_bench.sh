#!/usr/bin/env bash
# The runs behind docs/benchmarks.md "Calibrated verdicts", one step or all of them:
#   benchmarks/calibrated_bench.sh [all|main|null|check]
# main:  synthaudit bench over the shared DDPM folders (calibrated figures from a simulated 40 % hold-out)
# null:  the null pairings: 1,000 other Fashion-MNIST images (no generator here saw them) against each
#        DDPM's generated images (benchmarks/make_gan_bench.py --real-only builds them, in seconds)
# check: the CLI audit of fmnist-ddpm-dev with REF.csv (id,0 rows only) and benchmarks/calibrated_check.py
# Environment: BENCH (default ../shared/bench), OUT (default bench-local), METHODS (default pixels,paper,default).
set -euo pipefail
cd "$(dirname "$0")/.."
BENCH=${BENCH:-../shared/bench}
OUT=${OUT:-bench-local}
METHODS=${METHODS:-pixels,paper,default}
PY=.venv/bin/python
SA=.venv/bin/synthaudit
step=${1:-all}
mkdir -p "$OUT"

if [[ $step == all || $step == main ]]; then
  $SA bench "$BENCH/fmnist-ddpm-dev" "$BENCH/fmnist-ddpm-dev-hard" --methods "$METHODS" \
    --workdir "$OUT/work" --output "$OUT/bench-main.json" | tee "$OUT/bench-main.txt"
fi

if [[ $step == all || $step == null ]]; then
  [[ -d $OUT/fmnist-real-other/real ]] || \
    $PY benchmarks/make_gan_bench.py --out "$OUT" --exclude "$BENCH/fmnist-ddpm-dev" --real-only
  $SA bench --null-real "$OUT/fmnist-real-other" "$BENCH/fmnist-ddpm-dev" "$BENCH/fmnist-ddpm-dev-hard" \
    --methods "$METHODS" --workdir "$OUT/work-null" --output "$OUT/bench-null.json" | tee "$OUT/bench-null.txt"
fi

if [[ $step == all || $step == check ]]; then
  B=$BENCH/fmnist-ddpm-dev
  $PY benchmarks/calibrated_check.py ref --labels "$B/labels.csv" --out "$OUT/REF.csv" --seed 0
  $SA audit --real "$B/real" --generated "$B/generated" --labels "$OUT/REF.csv" \
    --metrics "$OUT/m.json" --out "$OUT/r.csv"
  $PY benchmarks/calibrated_check.py score --labels "$B/labels.csv" --results "$OUT/r.csv" --metrics "$OUT/m.json" \
    | tee "$OUT/check.txt"
fi
