#!/usr/bin/env bash
# GPU check: the CLI audit of one benchmark folder with --device cuda, stage timings written to OUT.
# Needs only python3 with torch, timm, numpy, pillow, safetensors (faiss optional: a torch search is used
# without it). Usage: benchmarks/gpu_check.sh BENCH_FOLDER OUT_FOLDER [extra audit args...]
set -euo pipefail
bench=${1:?usage: gpu_check.sh BENCH_FOLDER OUT_FOLDER}
out=${2:?usage: gpu_check.sh BENCH_FOLDER OUT_FOLDER}
shift 2
repo=$(cd "$(dirname "$0")/.." && pwd)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python3 - >"$out/device.txt" <<'PY'
import torch
print("torch", torch.__version__)
print("cuda", torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "-")
PY
start=$(date +%s.%N)
python3 -m synthaudit audit --real "$bench/real" --generated "$bench/generated" --out "$out/results.csv" \
    --device cuda --workdir "$work" "$@" 2>&1 | tee "$out/audit.log"
end=$(date +%s.%N)
cp "$work/timings.json" "$out/timings.json"
python3 -c "print('end_to_end_seconds', round($end - $start, 2))" | tee -a "$out/timings.txt"
python3 -m synthaudit evaluate --pred "$out/results.csv" --labels "$bench/labels.csv" | tee "$out/evaluate.txt"
