"""Issue 19's open question: the default fits its PCA whitening on real + generated thumbnails; would a fit on
the real pool alone (which a checkpoint series could share) keep the accuracy? Runs the default on each
folder twice, the second time with the pretrain stage's whitening fitted on the real pool only, and prints
AUC and TPR@1%FPR of both (models.bench.run_bench: the audit runs without labels; labels only score it).

  .venv/bin/python benchmarks/whitening_pool.py ../shared/bench/fmnist-ddpm-dev ../shared/bench/fmnist-ddpm-dev-hard
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from synthaudit.models.bench import run_bench
from synthaudit.models.config import AuditConfig
from synthaudit.models.stages import pretrain as pretrain_stage


def _real_pool_only(workdir: Path, images: np.ndarray, config: AuditConfig, on_progress: Any) -> None:
    real, _ = pretrain_stage.load_decoded(workdir)
    pretrain_stage._fit_whitening(workdir, real.images, config, on_progress)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folders", nargs="+", type=Path)
    args = ap.parse_args()
    config = AuditConfig(device="cpu")
    print("| folder | whitening on real + generated | on the real pool only |")
    print("|---|---|---|")
    for folder in args.folders:
        cells = []
        for fit in ("both", "real"):
            if fit == "real":
                pretrain_stage._FITTERS["pixels_whitened"] = _real_pool_only
            try:
                with tempfile.TemporaryDirectory() as work:
                    row = run_bench([folder], ["default"], config, Path(work), redraws=0)[0]
            finally:
                pretrain_stage._FITTERS["pixels_whitened"] = pretrain_stage._fit_whitening
            cells.append(f"{row['auc']:.3f} / {row['tpr_at_1pct_fpr']:.3f}")
        print(f"| {folder.name} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
