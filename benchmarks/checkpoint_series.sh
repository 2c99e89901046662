#!/usr/bin/env bash
# Issue 19's checkpoint benchmark: leakage against training time for the snapshots of ONE training run (the
# Fashion-MNIST DCGAN of benchmarks/make_gan_bench.py, trained on its own used half of 1,000 real images that
# no shared generator saw, a folder written every 500 steps), compared in one run, timed against separate
# audits. The reference is the seeded 40 % draw of the not-used images (benchmarks/calibrated_check.py ref).
#   .venv/bin/python benchmarks/make_gan_bench.py --out bench-local/ckpt --exclude ../shared/bench/fmnist-ddpm-dev \
#       --snapshots 500,1000,1500,2000 --generated 1000
#   benchmarks/checkpoint_series.sh [BUILD] [OUT]   (defaults bench-local/ckpt, bench-local/ckpt-series)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${1:-bench-local/ckpt}
OUT=${2:-bench-local/ckpt-series}
rm -rf "$OUT" && mkdir -p "$OUT/ckpts"
folders=("$BUILD"/fmnist-dcgan-*)
first=${folders[0]}
.venv/bin/python benchmarks/calibrated_check.py ref --labels "$first/labels.csv" --out "$OUT/REF.csv" --seed 0
for f in "${folders[@]}"; do
  cmp -s "$first/labels.csv" "$f/labels.csv" || { echo "$f: other real images than $first"; exit 1; }
  ln -s "$(cd "$f/generated" && pwd)" "$OUT/ckpts/step-${f##*-}"
done
benchmarks/series_vs_separate.sh "$first/real" "$OUT/REF.csv" "$OUT/ckpts" "$OUT"
cat "$OUT/series/comparison.csv"
