"""Build medical-image membership benchmarks at 128 and 256 px from MRI volumes that install from the
package registries (no CT volume of useful size installs from them: see docs/benchmarks.md), the same layout
as ../shared/bench (real/, generated/, labels.csv, meta.json) plus slices.csv (which volume, axis and slice
each real image is, for per-volume analysis; no labels in it).

Volumes (T1-weighted MRI, 1 mm or 0.5 mm), fetched with the ordinary clients into --sources and checked by
SHA-256:
  ch2bet     Colin27, one person's averaged T1, brain-extracted (181x217x181, 1 mm)  Debian `mricron-data`
  inia19     INIA19 rhesus macaque T1 template (168x206x128, 0.5 mm)   Debian `mricron-data`
  ch2better  Colin27 again, re-processed at 0.5 mm (the SAME person as ch2bet) Debian `mricron-data`
  mni152     MNI ICBM152 2009a nonlinear symmetric T1 (197x233x189, 1 mm) PyPI `nilearn` wheel
Each volume is cut along its three axes ("series") at 1 mm spacing; slices with little anatomy are left out;
each series is cropped to its anatomy's bounding square and resized to --sizes.

One generator, two splits (so one CPU training serves every folder):
  * the generator sees only the TRAIN set: a seeded random half of the contiguous slabs (--slab slices) of
    every series of the --train-volumes (ch2bet, inia19);
  * mri-slab-S:   real = every slice of ch2bet and inia19; used = the train slabs, not used = the other slabs
    (split by slab: a not-used slice has used neighbours a few mm away, the hard case of CT audits);
  * mri-volume-S: real = the train slabs (used) + as many slices of volumes the generator never saw
    (--holdout-volumes: mni152 and ch2better, seeded draw, not used): split by volume. ch2better is the same
    person as ch2bet, so it is also the "other study of a training patient" case; slices.csv lets an analysis
    separate the two hold-out volumes.

Generator: a DCGAN (the ImageCLEFmed task audits GANs) at 64x64, trained on the train slices downsized to 64,
its samples upsampled (bicubic) to each folder's size: that is said in meta.json ("upsampled_from": 64).
CPU configuration (default): width 24, batch 32, --steps 6000 (about 30-45 min on 2 shared cores); it
checkpoints under --out/.ckpt and --max-minutes stops it cleanly, so a long training runs in chunks (run the
same command again to resume). --gpu: the same DCGAN at 128x128 (one more layer), width 64, batch 128,
--steps 20000, for a GPU host (not run here: no GPU was lent to this task).

Run (from the repo root):
  .venv/bin/python benchmarks/make_ct_bench.py --out bench-local --max-minutes 14    # repeat until done
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import gzip
import hashlib
import json
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from dcgan import Discriminator, Generator, as_uint8, generate, optimisers, train_step
from PIL import Image

# ------------------------------------------------------------------ sources
MRICRON = ("mricron-data", "usr/share/mricron/templates")
NILEARN = ("nilearn==0.14.1", "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
VOLUMES = {
    "ch2bet": (
        "mricron",
        "ch2bet.nii.gz",
        "592a2d20abdf36eefcb540ca8958428040edffc1bc1a18ba1dcfbabac77c5dd1",
    ),
    "ch2better": (
        "mricron",
        "ch2better.nii.gz",
        "a094f3ccf383c495c9569625bd0c06993fd4b02d2a8d9966da5fea7d7e530e8d",
    ),
    "inia19": (
        "mricron",
        "inia19-t1-brain.nii.gz",
        "3f0707f4999a0c6b56d6c9a0145310cba17753e2b4612f577d8dbfe65a89e231",
    ),
    "mni152": (
        "nilearn",
        "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz",
        "421a10e872fd6cadae7f61d358dffbcc1795a497d61ee76c5dda2503e1a1e9e6",
    ),
}
LICENCES = {
    "mricron": "Debian package mricron-data (main; debian/copyright: BSD-3-clause, Chris Rorden); Colin27 from "
    "the MNI (Holmes et al. 1998), INIA19 from Rohlfing et al. 2012",
    "nilearn": "PyPI nilearn 0.14.1 wheel (BSD-3-clause); MNI ICBM152 2009a template (Fonov et al. 2011), "
    "MNI's permissive copyright notice",
}


def _run(cmd: list[str], cwd: Path) -> None:
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)


def fetch_sources(cache: Path) -> dict[str, Path]:
    """The four volumes' files: unpacked from `apt-get download mricron-data` and `pip download nilearn`."""
    cache = cache.resolve()
    cache.mkdir(parents=True, exist_ok=True)
    mricron_dir = cache / "mricron-data" / MRICRON[1]
    if not (mricron_dir / "ch2bet.nii.gz").exists():
        installed = Path("/") / MRICRON[1]
        if (installed / "ch2bet.nii.gz").exists():
            mricron_dir = installed
        else:
            _run(["apt-get", "download", MRICRON[0]], cache)
            deb = sorted(cache.glob("mricron-data_*.deb"))[-1]
            _run(["dpkg", "-x", str(deb), str(cache / "mricron-data")], cache)
    nilearn_file = cache / "nilearn" / Path(NILEARN[1]).name
    if not nilearn_file.exists():
        wheels = sorted(cache.glob("nilearn-*.whl"))
        if not wheels:
            _run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(cache), NILEARN[0]],
                cache,
            )
            wheels = sorted(cache.glob("nilearn-*.whl"))
        nilearn_file.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(wheels[-1]) as z:
            nilearn_file.write_bytes(z.read(NILEARN[1]))
    roots = {"mricron": mricron_dir, "nilearn": nilearn_file.parent}
    return {name: roots[src] / file for name, (src, file, _) in VOLUMES.items()}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_NIFTI_TYPES = {
    2: np.uint8,
    4: np.int16,
    8: np.int32,
    16: np.float32,
    64: np.float64,
    256: np.int8,
    512: np.uint16,
    768: np.uint32,
}


def read_nifti(path: Path) -> tuple[np.ndarray, tuple[float, ...]]:
    """A NIfTI-1 volume (.nii or .nii.gz) as float32 [X, Y, Z] (first volume if 4-D) and its voxel sizes."""
    if path.suffix == ".gz":
        with gzip.open(path) as fh:
            raw = fh.read()
    else:
        raw = path.read_bytes()
    end = "<" if struct.unpack("<i", raw[:4])[0] == 348 else ">"
    dims = struct.unpack(end + "8h", raw[40:56])
    dtype = struct.unpack(end + "h", raw[70:72])[0]
    pixdim = struct.unpack(end + "8f", raw[76:108])
    offset = int(struct.unpack(end + "f", raw[108:112])[0])
    slope, inter = struct.unpack(end + "2f", raw[112:120])
    shape = dims[1:4]
    data = np.frombuffer(raw, np.dtype(_NIFTI_TYPES[dtype]).newbyteorder(end), int(np.prod(shape)), offset)
    vol = data.reshape(shape[::-1]).T.astype(np.float32)
    if slope not in (0.0, 1.0) and np.isfinite(slope):
        vol = vol * slope + inter
    return vol, tuple(float(p) for p in pixdim[1:4])


# ------------------------------------------------------------------ slicing
def to_uint8(vol: np.ndarray) -> np.ndarray:
    """Clip at 0 and at the 99.5th percentile of the positive voxels, scale to 0..255."""
    vol = np.nan_to_num(vol, nan=0.0)
    top = float(np.percentile(vol[vol > 0], 99.5))
    return np.clip(vol / top * 255.0, 0, 255).round().astype(np.uint8)


def series_slices(
    vol: np.ndarray, pixdim: tuple[float, ...], axis: int, side: int, min_area: float = 0.3
) -> tuple[list[np.ndarray], list[int]]:
    """Slices along `axis` at 1 mm spacing, each cropped to the series' anatomy square, resized to `side`.

    Kept: slices whose anatomy (voxels > 5 % of 255) covers at least `min_area` of the series' largest slice.
    """
    step = max(1, int(round(1.0 / pixdim[axis])))
    moved = np.moveaxis(vol, axis, 0)
    fg = moved > 12
    proj = fg.any(axis=0)
    rows, cols = np.flatnonzero(proj.any(axis=1)), np.flatnonzero(proj.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    half = int(np.ceil(max(r1 - r0, c1 - c0) * 1.04 / 2))
    rc, cc = (r0 + r1) // 2, (c0 + c1) // 2
    areas = fg.sum(axis=(1, 2))
    keep = [i for i in range(0, moved.shape[0], step) if areas[i] >= min_area * areas.max()]
    out = []
    for i in keep:
        sl = np.pad(moved[i], half, mode="constant")[rc : rc + 2 * half, cc : cc + 2 * half]
        img = Image.fromarray(np.rot90(sl).copy()).resize((side, side), Image.BILINEAR, reducing_gap=None)
        out.append(np.asarray(img, dtype=np.uint8))
    return out, keep


def build_slices(paths: dict[str, Path], side: int) -> tuple[np.ndarray, list[dict]]:
    images, info = [], []
    for name, path in paths.items():
        vol, pixdim = read_nifti(path)
        vol8 = to_uint8(vol)
        for axis in range(3):
            slices, index = series_slices(vol8, pixdim, axis, side)
            for k, (img, i) in enumerate(zip(slices, index)):
                images.append(img)
                info.append({"volume": name, "axis": "xyz"[axis], "slice": i, "series_pos": k})
    return np.stack(images), info


def assign_slabs(info: list[dict], slab: int, volumes: list[str], seed: int) -> np.ndarray:
    """1 = train slab, 0 = other slab, -1 = not in the train volumes; a seeded half of each series' slabs."""
    rng = np.random.default_rng(seed)
    out = np.full(len(info), -1)
    series: dict[tuple[str, str], list[int]] = {}
    for j, row in enumerate(info):
        if row["volume"] in volumes:
            series.setdefault((row["volume"], row["axis"]), []).append(j)
    for key in sorted(series):
        members = series[key]
        n_slabs = int(np.ceil(len(members) / slab))
        chosen = set(rng.permutation(n_slabs)[: n_slabs // 2 + (n_slabs % 2) * int(rng.integers(2))].tolist())
        for k, j in enumerate(members):
            out[j] = int(k // slab in chosen)
    return out


# ------------------------------------------------------------------ DCGAN
CONFIGS = {
    "cpu": {"side": 64, "width": 24, "batch": 32, "steps": 6000, "lr": 2e-4},
    "gpu": {"side": 128, "width": 64, "batch": 128, "steps": 20000, "lr": 2e-4},
}


def downsize(images: np.ndarray, side: int) -> torch.Tensor:
    small = np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.BILINEAR)) for im in images])
    return torch.from_numpy(small).float()[:, None] / 127.5 - 1.0


def train(
    train_images: np.ndarray,
    cfg: dict,
    ckpt: Path,
    seed: int,
    device: str,
    max_minutes: float,
    snapshots: list[int],
) -> tuple[dict[int, Path], float]:
    """Train (or resume) the DCGAN; save the generator at each snapshot step. Returns the snapshots done."""
    torch.manual_seed(seed)
    x = downsize(train_images, cfg["side"]).to(device)
    gen, disc = (
        Generator(cfg["width"], cfg["side"]).to(device),
        Discriminator(cfg["width"], cfg["side"]).to(device),
    )
    opt_g, opt_d = optimisers(gen, disc, cfg["lr"])
    g = torch.Generator(device=device).manual_seed(seed + 1)
    step, seconds = 0, 0.0
    state_file = ckpt / "state.pt"
    if state_file.exists():
        state = torch.load(state_file, map_location=device, weights_only=False)
        gen.load_state_dict(state["gen"])
        disc.load_state_dict(state["disc"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        g.set_state(state["rng"].cpu() if device == "cpu" else state["rng"])
        step, seconds = state["step"], state["seconds"]
        print(f"resumed at step {step} ({seconds:.0f} s of training so far)", flush=True)
    ckpt.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        tmp = state_file.with_suffix(".tmp")
        torch.save(
            {
                "gen": gen.state_dict(),
                "disc": disc.state_dict(),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "rng": g.get_state(),
                "step": step,
                "seconds": seconds,
            },
            tmp,
        )
        tmp.replace(state_file)

    started = time.perf_counter()
    last = started
    while step < cfg["steps"]:
        loss_d, loss_g = train_step(gen, disc, opt_g, opt_d, x, cfg["batch"], g)
        step += 1
        now = time.perf_counter()
        seconds += now - last
        last = now
        if step % 100 == 0:
            print(
                f"step {step}: loss D {loss_d.item():.3f} G {loss_g.item():.3f} ({seconds:.0f} s)", flush=True
            )
        if step in snapshots:
            torch.save(gen.state_dict(), ckpt / f"gen-{step}.pt")
            save()
        if max_minutes and now - started > max_minutes * 60 and step < cfg["steps"]:
            save()
            print(
                f"stopped at step {step} after {max_minutes} min: run the same command again to resume",
                flush=True,
            )
            break
    save()
    return {s: ckpt / f"gen-{s}.pt" for s in snapshots if (ckpt / f"gen-{s}.pt").exists()}, seconds


def sample(weights: Path, cfg: dict, n: int, seed: int) -> np.ndarray:
    """n generated images at the generator's side, uint8."""
    gen = Generator(cfg["width"], cfg["side"])
    gen.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    return as_uint8(generate(gen, n, seed, chunk=250)[:, 0])


def upsample(images: np.ndarray, side: int) -> np.ndarray:
    if images.shape[1] == side:
        return images
    return np.stack([np.asarray(Image.fromarray(im).resize((side, side), Image.BICUBIC)) for im in images])


# ------------------------------------------------------------------ folders
def write_folder(
    out: Path,
    real: np.ndarray,
    used: np.ndarray,
    info: list[dict],
    generated: np.ndarray,
    meta: dict,
    shuffle_seed: int,
) -> None:
    if out.exists():
        shutil.rmtree(out)
    (out / "real").mkdir(parents=True)
    (out / "generated").mkdir()
    order = np.random.default_rng(shuffle_seed).permutation(len(real))
    labels, slices = ["id,used"], []
    for rank, i in enumerate(order, start=1):
        rid = f"r{rank:04d}"
        Image.fromarray(real[i]).save(out / "real" / f"{rid}.png")
        labels.append(f"{rid},{int(used[i])}")
        slices.append({"id": rid, **info[i]})
    (out / "labels.csv").write_text("\n".join(labels) + "\n")
    with (out / "slices.csv").open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["id", "volume", "axis", "slice", "series_pos"])
        writer.writeheader()
        writer.writerows(slices)
    for j, image in enumerate(generated, start=1):
        Image.fromarray(image).save(out / "generated" / f"g{j:05d}.png")
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench-local"))
    ap.add_argument("--sources", type=Path, default=None, help="download cache (default OUT/sources)")
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--slab", type=int, default=8, help="slices per slab (1 mm each)")
    ap.add_argument("--train-volumes", default="ch2bet,inia19")
    ap.add_argument("--holdout-volumes", default="mni152,ch2better")
    ap.add_argument("--gpu", action="store_true", help="the GPU configuration (128 px, wider, more steps)")
    ap.add_argument("--steps", type=int, default=None, help="override the configuration's training steps")
    ap.add_argument(
        "--snapshots", default=None, help="steps at which folders are written (default: the last)"
    )
    ap.add_argument(
        "--max-minutes", type=float, default=0.0, help="stop training after this long (resumable)"
    )
    ap.add_argument("--generated", type=int, default=3000)
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch CPU threads (0: torch's default; 1 is faster on a CPU shared with other jobs)",
    )
    ap.add_argument(
        "--holdout-only",
        action="store_true",
        help="write only OUT/mri-holdout-S (real/ + slices.csv: every slice of the hold-out volumes, "
        "no labels, no training), e.g. as the real images of the stress suite",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    cfg = dict(CONFIGS["gpu" if args.gpu else "cpu"])
    if args.steps:
        cfg["steps"] = args.steps
    snapshots = sorted(int(s) for s in (args.snapshots or str(cfg["steps"])).split(","))
    cfg["steps"] = max(cfg["steps"], snapshots[-1])
    device = "cuda" if args.gpu and torch.cuda.is_available() else "cpu"
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    train_volumes = args.train_volumes.split(",")
    holdout = args.holdout_volumes.split(",")

    paths = fetch_sources(args.sources or args.out / "sources")
    hashes = {name: sha256(p) for name, p in paths.items()}
    wrong = [n for n, h in hashes.items() if h != VOLUMES[n][2]]
    if wrong:
        raise SystemExit(f"unexpected contents (SHA-256) of {', '.join(wrong)}: another package version?")
    per_size = {side: build_slices(paths, side) for side in sizes}
    info = per_size[sizes[0]][1]
    if args.holdout_only:
        pool = np.flatnonzero(np.isin([r["volume"] for r in info], holdout))
        for side in sizes:
            folder = args.out / f"mri-holdout-{side}"
            write_folder(
                folder,
                per_size[side][0][pool],
                np.zeros(len(pool), int),
                [info[i] for i in pool],
                np.zeros((0, side, side), np.uint8),
                {
                    "data": {v: LICENCES[VOLUMES[v][0]] for v in holdout},
                    "volumes_sha256": hashes,
                    "purpose": "every slice of the hold-out volumes (no generator of this script saw them)",
                    "image_size": [side, side],
                    "n_real": len(pool),
                    "date": dt.date.today().isoformat(),
                    "made_by": "benchmarks/make_ct_bench.py --holdout-only",
                },
                3000 + args.seed,
            )
            (folder / "labels.csv").unlink()
            (folder / "generated").rmdir()
            print(f"wrote {folder}: {len(pool)} slices of {', '.join(holdout)}", flush=True)
        return
    slab = assign_slabs(info, args.slab, train_volumes, args.seed)
    counts = {v: sum(r["volume"] == v for r in info) for v in paths}
    print(
        "slices per volume:",
        counts,
        "train:",
        int((slab == 1).sum()),
        "other slabs:",
        int((slab == 0).sum()),
        flush=True,
    )
    train_idx = np.flatnonzero(slab == 1)
    # the generator trains on the largest size's slices (downsized to its side)
    tag = "gpu" if args.gpu else "cpu"
    ckpt = args.out / ".ckpt" / f"mri-dcgan-{tag}-seed{args.seed}"
    done, seconds = train(
        per_size[sizes[-1]][0][train_idx], cfg, ckpt, args.seed, device, args.max_minutes, snapshots
    )
    if snapshots[-1] not in done:
        return
    # the by-volume folder: train slabs (used) + an equal number of hold-out-volume slices (seeded draw)
    pool = np.flatnonzero(np.isin([r["volume"] for r in info], holdout))
    rng = np.random.default_rng(args.seed + 7)
    not_used = np.sort(rng.choice(pool, size=min(len(pool), len(train_idx)), replace=False))
    for step in snapshots:
        fake = sample(done[step], cfg, args.generated, args.seed + 2)
        for side in sizes:
            images, _ = per_size[side]
            gen_side = upsample(fake, side)
            base = {
                "data": {v: LICENCES[VOLUMES[v][0]] for v in paths},
                "volumes_sha256": hashes,
                "slices_per_volume": counts,
                "slicing": "each volume cut along its 3 axes at 1 mm spacing; slices whose anatomy covers < 30 % of "
                "the series' largest slice left out; cropped to the series' anatomy square (+4 %), bilinear resize",
                "generator": f"DCGAN at {cfg['side']}x{cfg['side']} (transposed-conv generator with batch norm, "
                f"spectral-norm discriminator, non-saturating loss, Adam {cfg['lr']} / 0.5), width {cfg['width']}, "
                "trained ONLY on the train slabs of the train volumes",
                "upsampled_from": cfg["side"] if cfg["side"] != side else None,
                "train_volumes": train_volumes,
                "slab_slices": args.slab,
                "n_train": len(train_idx),
                "train_steps": step,
                "batch": cfg["batch"],
                "epochs_equiv": round(step * cfg["batch"] / len(train_idx), 1),
                "trained_on": device if device == "cpu" else torch.cuda.get_device_name(0),
                "train_seconds": round(seconds, 1),
                "configuration": tag,
                "date": dt.date.today().isoformat(),
                "seed": args.seed,
                "image_size": [side, side],
                "n_generated": args.generated,
                "made_by": "benchmarks/make_ct_bench.py",
            }
            suffix = f"-{tag}" if args.gpu else ""
            suffix += f"-{step}" if len(snapshots) > 1 else ""
            in_slab = np.flatnonzero(slab >= 0)
            write_folder(
                args.out / f"mri-slab-{side}{suffix}",
                images[in_slab],
                slab[in_slab],
                [info[i] for i in in_slab],
                gen_side,
                {
                    **base,
                    "split": f"by slab: every slice of {', '.join(train_volumes)}; used = the train "
                    f"slabs (a seeded half of each series' {args.slab}-slice slabs), not used = the others",
                    "n_real": len(in_slab),
                    "n_used": int((slab == 1).sum()),
                },
                1000 + args.seed,
            )
            vol_idx = np.concatenate([train_idx, not_used])
            vol_used = np.r_[np.ones(len(train_idx), int), np.zeros(len(not_used), int)]
            write_folder(
                args.out / f"mri-volume-{side}{suffix}",
                images[vol_idx],
                vol_used,
                [info[i] for i in vol_idx],
                gen_side,
                {
                    **base,
                    "split": f"by volume: used = the train slabs; not used = a seeded draw of as many "
                    f"slices of {', '.join(holdout)} (volumes the generator never saw; ch2better is the same "
                    "person as ch2bet)",
                    "n_real": len(vol_idx),
                    "n_used": len(train_idx),
                },
                2000 + args.seed,
            )
            print(f"wrote {args.out}/mri-slab-{side}{suffix} and mri-volume-{side}{suffix}", flush=True)


if __name__ == "__main__":
    main()
