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
SA=.venv/bin/synthaudit
rm -rf "$OUT" && mkdir -p "$OUT/ckpts"
.venv/bin/python benchmarks/calibrated_check.py ref --labels "$B/fmnist-ddpm-dev/labels.csv" --out "$OUT/REF.csv" --seed 0
cp -r "$B/fmnist-ddpm-dev-hard/generated" "$OUT/ckpts/step-1800"
cp -r "$B/fmnist-ddpm-dev/generated" "$OUT/ckpts/step-3428"
for s in 1800:fmnist-ddpm-dev-hard 3428:fmnist-ddpm-dev; do
  mkdir -p "$OUT/ckpts/step-${s%%:*}a"
  ls "$B/${s#*:}/generated" | sort | head -1500 | while read -r f; do cp "$B/${s#*:}/generated/$f" "$OUT/ckpts/step-${s%%:*}a/"; done
done
start=$(date +%s.%N)
$SA compare --real "$B/fmnist-ddpm-dev/real" --labels "$OUT/REF.csv" --generated "$OUT/ckpts" --out "$OUT/series" \
  --workdir "$OUT/series-work" 2>/dev/null
series=$(echo "$(date +%s.%N) - $start" | bc)
start=$(date +%s.%N)
for c in "$OUT"/ckpts/*; do
  $SA audit --real "$B/fmnist-ddpm-dev/real" --labels "$OUT/REF.csv" --generated "$c" --out "$OUT/alone-$(basename "$c").csv" \
    --metrics "$OUT/alone-$(basename "$c").json" 2>/dev/null | tail -1
done
alone=$(echo "$(date +%s.%N) - $start" | bc)
for c in "$OUT"/ckpts/*; do
  n=$(basename "$c")
  cmp -s "$OUT/series/$n/results.csv" "$OUT/alone-$n.csv" && echo "$n: results.csv identical to its separate audit" \
    || echo "$n: results.csv DIFFERS from its separate audit"
done
printf 'series of 4: %.1f s; 4 separate audits: %.1f s\n' "$series" "$alone"
grep -h '"decode"' "$OUT"/series-work/*/timings.json || true
