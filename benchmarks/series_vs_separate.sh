#!/usr/bin/env bash
# One checkpoint series against separate audits: `synthaudit compare` over every folder of CKPTS (into
# OUT/series, work folders in OUT/series-work), then one `synthaudit audit` per folder (OUT/alone-<name>.csv),
# whether each checkpoint's results.csv is byte-identical to its separate audit, and the two wall times.
# Called by benchmarks/compare_timing.sh and benchmarks/checkpoint_series.sh.
#   benchmarks/series_vs_separate.sh REAL LABELS CKPTS OUT
set -euo pipefail
cd "$(dirname "$0")/.."
REAL=${1:?usage: series_vs_separate.sh REAL LABELS CKPTS OUT}
LABELS=${2:?}
CKPTS=${3:?}
OUT=${4:?}
SA=.venv/bin/synthaudit
n=$(find -L "$CKPTS" -mindepth 1 -maxdepth 1 -type d | wc -l)
start=$(date +%s.%N)
$SA compare --real "$REAL" --labels "$LABELS" --generated "$CKPTS" --out "$OUT/series" --workdir "$OUT/series-work" 2>/dev/null
series=$(echo "$(date +%s.%N) - $start" | bc)
start=$(date +%s.%N)
for c in "$CKPTS"/*; do
  $SA audit --real "$REAL" --labels "$LABELS" --generated "$c" --out "$OUT/alone-$(basename "$c").csv" \
    --metrics "$OUT/alone-$(basename "$c").json" 2>/dev/null | tail -1
done
alone=$(echo "$(date +%s.%N) - $start" | bc)
for c in "$CKPTS"/*; do
  name=$(basename "$c")
  cmp -s "$OUT/series/$name/results.csv" "$OUT/alone-$name.csv" && echo "$name: results.csv identical to its separate audit" \
    || echo "$name: results.csv DIFFERS from its separate audit"
done
printf 'series of %d: %.1f s; %d separate audits: %.1f s\n' "$n" "$series" "$n" "$alone"
