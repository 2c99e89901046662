"""Build a second ground-truth membership benchmark with another generator family: a DCGAN (the
ImageCLEFmed GANs task audits GANs) trained on CPU on 500 Fashion-MNIST images, the same layout as
../shared/bench (real/, generated/, labels.csv, meta.json), one folder per training snapshot.

The real candidates come from Fashion-MNIST's test split (Debian package `dataset-fashion-mnist`), with
every image that also stands among the real images of the folders given by --exclude left out, so the
new benchmark shares no real image with the old ones: 50 used + 50 not used per class, 1,000 in all.
The GAN sees only the used half. Labels are written for scoring; nothing in the project reads them.

Run (about 10-20 min on 2 CPU cores):
  .venv/bin/python benchmarks/make_gan_bench.py --out bench-local --exclude ../shared/bench/fmnist-ddpm-dev

--real-only writes only those 1,000 real images (the same ones, ids and order as the GAN folders' real/)
to OUT/fmnist-real-other/real, in seconds and without training: real images that no generator of the
--exclude folders saw, for the null pairings of `synthaudit bench --null-real` (docs/benchmarks.md):
  .venv/bin/python benchmarks/make_gan_bench.py --out bench-local --exclude ../shared/bench/fmnist-ddpm-dev --real-only
Either way the written real images are hashed again and checked against the --exclude folders.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from dcgan import Discriminator, Generator, as_uint8, generate, optimisers, train_step
from PIL import Image

FASHION = Path("/usr/share/datasets/fashion-mnist")
SIDE, WIDTH = 32, 64  # 28x28 padded to 32x32


def read_idx(path: Path) -> np.ndarray:
    """An idx (MNIST) file: uint8 images [N, 28, 28] or labels [N]."""
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def excluded_hashes(folders: list[Path]) -> set[str]:
    out = set()
    for folder in folders:
        for png in (folder / "real").glob("*.png"):
            out.add(hashlib.sha256(np.asarray(Image.open(png).convert("L")).tobytes()).hexdigest())
    return out


def pick_real(seed: int, exclude: set[str]) -> tuple[np.ndarray, np.ndarray]:
    """1,000 test-split images, 100 per class, none in `exclude`; used = the first 50 of each class."""
    images = read_idx(FASHION / "t10k-images-idx3-ubyte.gz")
    classes = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    rng = np.random.default_rng(seed)
    chosen, used = [], []
    for c in range(10):
        pool = [
            i
            for i in rng.permutation(np.flatnonzero(classes == c))
            if hashlib.sha256(images[i].tobytes()).hexdigest() not in exclude
        ]
        chosen += pool[:100]
        used += [1] * 50 + [0] * 50
    return images[np.array(chosen)], np.array(used)


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 [N, 28, 28] -> float [-1, 1] [N, 1, 32, 32] (padded with the background value)."""
    x = torch.from_numpy(images).float()[:, None] / 127.5 - 1.0
    return F.pad(x, (2, 2, 2, 2), value=-1.0)


def sample(generator: Generator, n: int, seed: int) -> np.ndarray:
    """n generated images, uint8 [n, 28, 28] (the 32-px output without its padding)."""
    return as_uint8(generate(generator, n, seed, chunk=500)[:, 0, 2:30, 2:30])


def write_real(out: Path, real: np.ndarray, used: np.ndarray, shuffle_seed: int) -> list[str]:
    """out/real/rNNNN.png in a seeded shuffled order; the `id,used` lines of labels.csv."""
    (out / "real").mkdir(parents=True, exist_ok=True)
    order = np.random.default_rng(shuffle_seed).permutation(len(real))
    rows = ["id,used"]
    for rank, i in enumerate(order, start=1):
        Image.fromarray(real[i]).save(out / "real" / f"r{rank:04d}.png")
        rows.append(f"r{rank:04d},{int(used[i])}")
    return rows


def check_disjoint(folder: Path, exclude: set[str]) -> int:
    """Hash the pixels of every written real image again; fail if any is among the excluded ones."""
    written = excluded_hashes([folder])
    shared = written & exclude
    if shared:
        raise SystemExit(f"{folder}/real shares {len(shared)} images with the --exclude folders")
    return len(written)


def write_folder(out: Path, real: np.ndarray, used: np.ndarray, generated: np.ndarray, meta: dict) -> None:
    (out / "generated").mkdir(parents=True, exist_ok=True)
    rows = write_real(out, real, used, meta["shuffle_seed"])
    (out / "labels.csv").write_text("\n".join(rows) + "\n")
    for j, image in enumerate(generated, start=1):
        Image.fromarray(image).save(out / "generated" / f"g{j:05d}.png")
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench-local"))
    ap.add_argument("--exclude", type=Path, action="append", default=[])
    ap.add_argument("--snapshots", default="2000,6000", help="training steps at which a folder is written")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--generated", type=int, default=3000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--real-only",
        action="store_true",
        help="write only the real images to OUT/fmnist-real-other (no GAN training), for null pairings",
    )
    args = ap.parse_args()
    snapshots = sorted(int(s) for s in args.snapshots.split(","))
    torch.manual_seed(args.seed)
    exclude = excluded_hashes(args.exclude)
    real, used = pick_real(args.seed, exclude)
    if args.real_only:
        write_real_only(args, real, exclude)
        return
    train = to_tensor(real[used == 1])
    generator, discriminator = Generator(WIDTH, SIDE), Discriminator(WIDTH, SIDE)
    opt_g, opt_d = optimisers(generator, discriminator, 2e-4)
    started, g = time.perf_counter(), torch.Generator().manual_seed(args.seed + 1)
    for step in range(1, snapshots[-1] + 1):
        loss_d, loss_g = train_step(generator, discriminator, opt_g, opt_d, train, args.batch, g)
        if step % 250 == 0:
            print(
                f"step {step}: loss D {loss_d.item():.3f} G {loss_g.item():.3f} ({time.perf_counter() - started:.0f} s)",
                flush=True,
            )
        if step in snapshots:
            folder = args.out / f"fmnist-dcgan-{step}"
            meta = {
                "data": "Fashion-MNIST test split (Debian package dataset-fashion-mnist, MIT licence); "
                "no image shared with the --exclude folders",
                "excluded_folders": [str(p) for p in args.exclude],
                "split": "500 used + 500 not used, stratified by class (50 + 50 per class)",
                "generator": "DCGAN (transposed-conv generator with batch norm, spectral-norm discriminator, "
                "non-saturating loss, Adam 2e-4 / 0.5), trained ONLY on the used images, 28x28 padded to 32x32",
                "train_steps": step,
                "batch": args.batch,
                "epochs_equiv": round(step * args.batch / 500, 1),
                "trained_on": "cpu",
                "train_seconds": round(time.perf_counter() - started, 1),
                "date": dt.date.today().isoformat(),
                "seed": args.seed,
                "shuffle_seed": 1000 + args.seed,
                "n_real": len(real),
                "n_used": int(used.sum()),
                "n_generated": args.generated,
                "made_by": "benchmarks/make_gan_bench.py",
            }
            write_folder(folder, real, used, sample(generator, args.generated, args.seed + 2), meta)
            n = check_disjoint(folder, exclude)
            print(f"wrote {folder} ({n} distinct real images, none in the --exclude folders)", flush=True)


def write_real_only(args: argparse.Namespace, real: np.ndarray, exclude: set[str]) -> None:
    """OUT/fmnist-real-other: real/ (the GAN folders' real images, same ids) and meta.json, no labels:
    none of these images was seen by the generators of the --exclude folders, so all are not used there."""
    if not exclude:
        raise SystemExit(
            "--real-only needs --exclude: the folders whose generators these images must not have trained"
        )
    folder = args.out / "fmnist-real-other"
    write_real(folder, real, np.zeros(len(real), dtype=int), 1000 + args.seed)
    n = check_disjoint(folder, exclude)
    meta = {
        "data": "Fashion-MNIST test split (Debian package dataset-fashion-mnist, MIT licence); "
        "no image shared with the --exclude folders (pixel SHA-256, checked after writing)",
        "excluded_folders": [str(p) for p in args.exclude],
        "excluded_images": len(exclude),
        "purpose": "null pairings: real images that no generator of the excluded folders saw "
        "(synthaudit bench --null-real)",
        "same_images_as": "the real/ of the fmnist-dcgan-* folders built with the same --seed",
        "date": dt.date.today().isoformat(),
        "seed": args.seed,
        "shuffle_seed": 1000 + args.seed,
        "n_real": len(real),
        "n_distinct": n,
        "made_by": "benchmarks/make_gan_bench.py --real-only",
    }
    (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(
        f"wrote {folder}: {len(real)} real images ({n} distinct), none among the {len(exclude)} excluded",
        flush=True,
    )


if __name__ == "__main__":
    main()
