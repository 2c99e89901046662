#!/usr/bin/env bash
# The checkpoint comparison against separate audits (docs/performance.md, "Comparing checkpoints"):
# four generated sets (the 1,800-step and the 3,428-step DDPM's samples of the shared Fashion-MNIST
# folders, each whole and its first 1,500 images) against the same 1,000 real images, with the
# calibrated draw of benchmarks/calibrated_check.py as the reference (labels id,0), method default.
#   benchmarks/compare_timing.sh [OUT]        (OUT default bench-local/compare)
set -euo pipefail
cd "$(dirname "$0")/.."
B=../shared/bench
OUT=${1:-bench-local/compare}
rm -rf "$OUT" && mkdir -p "$OUT/ckpts"
.venv/bin/python benchmarks/calibrated_check.py ref --labels "$B/fmnist-ddpm-dev/labels.csv" --out "$OUT/REF.csv" --seed 0
cp -r "$B/fmnist-ddpm-dev-hard/generated" "$OUT/ckpts/step-1800"
cp -r "$B/fmnist-ddpm-dev/generated" "$OUT/ckpts/step-3428"
for s in 1800:fmnist-ddpm-dev-hard 3428:fmnist-ddpm-dev; do
  mkdir -p "$OUT/ckpts/step-${s%%:*}a"
  ls "$B/${s#*:}/generated" | sort | head -1500 | while read -r f; do cp "$B/${s#*:}/generated/$f" "$OUT/ckpts/step-${s%%:*}a/"; done
done
benchmarks/series_vs_separate.sh "$B/fmnist-ddpm-dev/real" "$OUT/REF.csv" "$OUT/ckpts" "$OUT"
grep -h '"decode"' "$OUT"/series-work/*/timings.json || true
