"""Shifted-reference benchmark cases for the reference check (issue 22): each case is a folder with real/
(the candidates), reference/ (the images given with --reference), generated/ and a hidden labels.csv
(id,used,role; for scoring only, nothing in the product reads it). Seeded; written under --out
(default bench-local/shift, git-ignored).

Shifts of the reference (the candidates are never changed):
  scanner   gamma 1.4, a 0.8-pixel Gaussian blur, Gaussian noise sigma 0.02 (of the 0..1 range)
  classmix  reference drawn from Fashion-MNIST classes 0-4 only, candidates from all 10 (another patient mix)
  bias      a smooth multiplicative bias field: a random 2nd-order polynomial per image, scaled to +-20 %
  random    none: a seeded random 40 % (the control, must pass the check)

Pairings:
  null-*   1,000 Fashion-MNIST test images that neither shared DDPM saw (make_gan_bench.pick_real, the
           images of bench-local/fmnist-real-other): reference 400 (shifted), candidates 600, generated =
           ../shared/bench/fmnist-ddpm-dev/generated. No candidate was used.
  leak-*   ../shared/bench/fmnist-ddpm-dev: reference = 200 of its 500 not-used images (leak-random: exactly
           models.bench.draw_reference(labels, 0.4, 0), the calibrated table's draw), shifted; candidates =
           the other 800 (500 used); generated = its DDPM's. labels.csv is read only to build and score.
  mri-null-* (--mri) every slice (128 px) of the two hold-out MRI volumes of make_ct_bench.py (mni152,
           ch2better; slices of one volume are near-duplicates): reference = a seeded random 40 % of the
           slices (slab-correlated: neighbours of a reference slice are candidates), candidates = the rest;
           generated = every slice of inia19 (a macaque template no candidate comes from: a stand-in
           generator that saw none of the candidates). Shifts: random, bias, scanner.

Run: .venv/bin/python benchmarks/make_shift_bench.py --out bench-local/shift --mri
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import make_gan_bench

from synthaudit.models.bench import draw_reference
from synthaudit.models.results import read_labels_csv

DEV = Path("../shared/bench/fmnist-ddpm-dev")
SHARE = 0.4


def gaussian_blur(img: np.ndarray, sigma: float) -> np.ndarray:
    """Separable Gaussian blur of a float image (reflect padding)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    k = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    k /= k.sum()
    padded = np.pad(img, radius, mode="reflect")
    rows = np.apply_along_axis(lambda r: np.convolve(r, k, mode="valid"), 1, padded)
    return np.apply_along_axis(lambda c: np.convolve(c, k, mode="valid"), 0, rows)


def scanner(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    out = []
    for im in images:
        x = (im.astype(np.float64) / 255.0) ** 1.4
        x = gaussian_blur(x, 0.8) + rng.normal(0, 0.02, x.shape)
        out.append(np.clip(np.round(x * 255.0), 0, 255).astype(np.uint8))
    return np.stack(out)


def bias_field(images: np.ndarray, rng: np.random.Generator, amplitude: float = 0.2) -> np.ndarray:
    """Multiply each image by 1 + a random 2nd-order polynomial field scaled to +-amplitude."""
    h, w = images.shape[1:]
    yy, xx = np.mgrid[-1 : 1 : h * 1j, -1 : 1 : w * 1j]
    basis = np.stack([xx, yy, xx * yy, xx**2 - 1 / 3, yy**2 - 1 / 3])
    out = []
    for im in images:
        field = np.tensordot(rng.normal(size=5), basis, axes=1)
        field = 1.0 + amplitude * field / np.abs(field).max()
        out.append(np.clip(np.round(im.astype(np.float64) * field), 0, 255).astype(np.uint8))
    return np.stack(out)


def write_case(
    out: Path,
    cand: np.ndarray,
    cand_ids: list[str],
    cand_used: np.ndarray,
    ref: np.ndarray,
    generated: Path | np.ndarray,
    meta: dict,
) -> None:
    if out.exists():
        shutil.rmtree(out)
    (out / "real").mkdir(parents=True)
    (out / "reference").mkdir()
    rows = ["id,used,role"]
    for image_id, im, used in zip(cand_ids, cand, cand_used, strict=True):
        Image.fromarray(im).save(out / "real" / f"{image_id}.png")
        rows.append(f"{image_id},{int(used)},candidate")
    for j, im in enumerate(ref, start=1):
        Image.fromarray(im).save(out / "reference" / f"q{j:04d}.png")
        rows.append(f"q{j:04d},0,reference")
    if isinstance(generated, Path):
        shutil.copytree(generated, out / "generated")
    else:
        (out / "generated").mkdir()
        for j, im in enumerate(generated, start=1):
            Image.fromarray(im).save(out / "generated" / f"g{j:05d}.png")
    (out / "labels.csv").write_text("\n".join(rows) + "\n")
    meta = {**meta, "n_candidates": len(cand), "n_reference": len(ref), "n_used": int(np.sum(cand_used))}
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(
        f"wrote {out}: {len(cand)} candidates ({int(np.sum(cand_used))} used), {len(ref)} reference",
        flush=True,
    )


def shift(kind: str, images: np.ndarray, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if kind == "scanner":
        return scanner(images, rng)
    if kind == "bias":
        return bias_field(images, rng)
    return images


def fmnist_classes(images: np.ndarray) -> np.ndarray:
    """Class of each image, by pixel hash against Fashion-MNIST's train and test splits."""
    table = {}
    for split in ("train", "t10k"):
        imgs = make_gan_bench.read_idx(make_gan_bench.FASHION / f"{split}-images-idx3-ubyte.gz")
        labs = make_gan_bench.read_idx(make_gan_bench.FASHION / f"{split}-labels-idx1-ubyte.gz")
        for im, c in zip(imgs, labs, strict=True):
            table[hashlib.sha256(im.tobytes()).hexdigest()] = int(c)
    return np.array([table[hashlib.sha256(im.tobytes()).hexdigest()] for im in images])


def reference_positions(kind: str, pool: np.ndarray, classes: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Positions (into the not-used pool) of the reference: random, or from classes 0-4 for classmix."""
    rng = np.random.default_rng(seed)
    allowed = np.flatnonzero(classes[pool] < 5) if kind == "classmix" else np.arange(len(pool))
    return np.sort(rng.choice(allowed, size=n, replace=False))


def build_fmnist(out: Path, seed: int) -> None:
    kinds = ("scanner", "classmix", "bias", "random")
    # null: images no generator saw (the same 1,000 as bench-local/fmnist-real-other)
    exclude = make_gan_bench.excluded_hashes([DEV])
    real, _ = make_gan_bench.pick_real(0, exclude)
    classes = np.repeat(np.arange(10), 100)  # pick_real: 100 per class, in class order
    ids = [f"n{i:04d}" for i in range(len(real))]
    for k, kind in enumerate(kinds):
        pos = reference_positions(kind, np.arange(len(real)), classes, int(SHARE * len(real)), seed + k)
        is_ref = np.zeros(len(real), bool)
        is_ref[pos] = True
        write_case(
            out / f"null-{kind}",
            real[~is_ref],
            [i for i, r in zip(ids, is_ref, strict=True) if not r],
            np.zeros(int((~is_ref).sum()), int),
            shift(kind, real[is_ref], seed + 100 + k),
            DEV / "generated",
            {
                "pairing": "null",
                "shift": kind,
                "seed": seed,
                "real": "make_gan_bench.pick_real(0, excl. dev)",
            },
        )
    # leaking: the shared DDPM folder
    labels = read_labels_csv(DEV / "labels.csv")
    dev_ids = sorted(labels)
    dev = np.stack([np.asarray(Image.open(DEV / "real" / f"{i}.png").convert("L")) for i in dev_ids])
    used = np.array([labels[i] for i in dev_ids])
    dev_classes = fmnist_classes(dev)
    not_used = np.flatnonzero(used == 0)
    n_ref = int(round(SHARE * len(not_used)))
    for k, kind in enumerate(kinds):
        if kind == "random":
            drawn = set(draw_reference(labels, SHARE, 0))
            ref_idx = np.array([j for j, i in enumerate(dev_ids) if i in drawn])
        else:
            ref_idx = not_used[reference_positions(kind, not_used, dev_classes, n_ref, seed + k)]
        is_ref = np.zeros(len(dev), bool)
        is_ref[ref_idx] = True
        write_case(
            out / f"leak-{kind}",
            dev[~is_ref],
            [i for i, r in zip(dev_ids, is_ref, strict=True) if not r],
            used[~is_ref],
            shift(kind, dev[is_ref], seed + 200 + k),
            DEV / "generated",
            {"pairing": "leaking (fmnist-ddpm-dev)", "shift": kind, "seed": seed},
        )


def build_mri(out: Path, sources: Path, seed: int) -> None:
    import make_ct_bench

    paths = make_ct_bench.fetch_sources(sources)
    wrong = [n for n, p in paths.items() if make_ct_bench.sha256(p) != make_ct_bench.VOLUMES[n][2]]
    if wrong:
        raise SystemExit(f"unexpected contents (SHA-256) of {', '.join(wrong)}")
    images, info = make_ct_bench.build_slices(paths, 128)
    volume = np.array([r["volume"] for r in info])
    pool = np.flatnonzero(np.isin(volume, ["mni152", "ch2better"]))
    generated = images[volume == "inia19"]
    ids = [f"{info[i]['volume']}-{info[i]['axis']}{info[i]['slice']:03d}" for i in pool]
    for k, kind in enumerate(("random", "bias", "scanner")):
        rng = np.random.default_rng(seed + 300 + k)
        is_ref = np.zeros(len(pool), bool)
        is_ref[rng.choice(len(pool), size=int(SHARE * len(pool)), replace=False)] = True
        write_case(
            out / f"mri-null-{kind}",
            images[pool][~is_ref],
            [i for i, r in zip(ids, is_ref, strict=True) if not r],
            np.zeros(int((~is_ref).sum()), int),
            shift(kind, images[pool][is_ref], seed + 400 + k),
            generated,
            {"pairing": "null (MRI slices, slab-correlated)", "shift": kind, "seed": seed, "size": 128},
        )


def build_mri_leak(out: Path, sources: Path, seed: int) -> None:
    """MRI cases with a leaking stand-in generator: candidates = every slice of ch2better (used) and of
    mni152 outside the reference; reference = a seeded 40 % of mni152's slices (shifted or not); generated =
    noisy copies (sigma 3 grey levels) of a seeded half of ch2better's slices beside every inia19 slice, a
    generator that memorised part of its training volume. No MRI generator was trained for this."""
    import make_ct_bench

    paths = make_ct_bench.fetch_sources(sources)
    images, info = make_ct_bench.build_slices(paths, 128)
    volume = np.array([r["volume"] for r in info])
    ids = np.array([f"{r['volume']}-{r['axis']}{r['slice']:03d}" for r in info])
    used, other = np.flatnonzero(volume == "ch2better"), np.flatnonzero(volume == "mni152")
    rng = np.random.default_rng(seed + 500)
    copied = rng.choice(used, size=len(used) // 2, replace=False)
    noise = rng.normal(0, 3.0, size=(len(copied), *images.shape[1:]))
    generated = np.concatenate(
        [np.clip(images[copied] + noise, 0, 255).round().astype(np.uint8), images[volume == "inia19"]]
    )
    for k, kind in enumerate(("random", "bias", "scanner")):
        rng = np.random.default_rng(seed + 600 + k)
        is_ref = np.zeros(len(other), bool)
        is_ref[rng.choice(len(other), size=int(SHARE * len(other)), replace=False)] = True
        cand = np.r_[used, other[~is_ref]]
        write_case(
            out / f"mri-leak-{kind}",
            images[cand],
            list(ids[cand]),
            np.r_[np.ones(len(used), int), np.zeros(int((~is_ref).sum()), int)],
            shift(kind, images[other[is_ref]], seed + 700 + k),
            generated,
            {
                "pairing": "leaking stand-in generator (noisy copies of half the used volume's slices)",
                "shift": kind,
                "seed": seed,
                "size": 128,
            },
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=Path("bench-local/shift"))
    ap.add_argument("--sources", type=Path, default=Path("bench-local/sources"))
    ap.add_argument("--mri", action="store_true", help="also the MRI slice cases (make_ct_bench's volumes)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    build_fmnist(args.out, args.seed)
    if args.mri:
        build_mri(args.out, args.sources, args.seed)
        build_mri_leak(args.out, args.sources, args.seed)


if __name__ == "__main__":
    main()
