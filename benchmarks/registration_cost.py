"""The registration's own cost at the challenge's size: models.registered_score.registered_evidence on the perf
workload's synthetic images (models.perf.synthetic_images; 6,000 real + 10,000 generated of 256 px by default),
with the wall time of each part. No copy is in the workload, so this is the price every audit pays.

  .venv/bin/python benchmarks/registration_cost.py --real 6000 --generated 10000 --size 256
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch

from synthaudit.models.index import search
from synthaudit.models.perf import synthetic_images
from synthaudit.models.registered_score import registered_evidence


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=int, default=6000)
    ap.add_argument("--generated", type=int, default=10000)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--device", default="cpu", help="cpu, cuda or auto (the registration's device)")
    args = ap.parse_args()
    from synthaudit.models.device import resolve_device

    device = resolve_device(args.device)
    g = torch.Generator().manual_seed(0)
    real = synthetic_images(args.real, args.size, g)
    generated = synthetic_images(args.generated, args.size, g)
    marks: list[tuple[float, float]] = []
    started = time.perf_counter()
    evidence = registered_evidence(
        real,
        generated,
        lambda *a, **k: search(*a, device=str(device), **k),
        lambda f: marks.append((f, time.perf_counter() - started)),
        device=device,
    )
    total = time.perf_counter() - started
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu"
    print(
        f"device {name}; load average at the end: {os.getloadavg()[0]:.1f}; torch threads {torch.get_num_threads()}"
    )
    for f, t in marks:
        print(f"  progress {f:.2f} at {t:6.1f} s")
    print(
        f"registration of {args.real} real + {args.generated} generated ({args.size} px): {total:.1f} s; "
        f"registered copies found: {int(evidence.strong().sum())}"
    )


if __name__ == "__main__":
    main()
