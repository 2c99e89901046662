"""The copy-transform stress suite: "generators" whose outputs are transformed copies of training images mixed
with novel images from a real generator, the truth known by construction.

For each folder: real/ = the --real images (all of them); a seeded random half of them is "used"
(labels.csv); generated/ = exactly one transformed copy of every used image + as many novel images (a seeded
draw from --novel: the samples of a real generator that never saw the --real images), shuffled. Nothing here
reads another benchmark's labels: "used" is this script's own seeded choice.

Transforms, one at a time and combined, each at three strengths (low / medium / high); sizes are relative to
the image side, so a folder means the same at 28 or 256 px:
  translate   shift by 2 / 4 / 8 % of the side, random direction
  rotate      2.5 / 5 / 10 degrees, random sign
  scale       isotropic 2.5 / 5 / 10 %, random sign (zoom in or out about the centre)
  elastic     smooth random displacement field (4x4 control grid, bicubic), max 1 / 2 / 4 % of the side
  gamma       gamma 1.15 / 1.3 / 1.6 (or its inverse) and an intensity window cut by 5 / 10 / 20 %
  noise       Gaussian noise, sigma 2 / 5 / 10 % of full scale
  blur        Gaussian blur, sigma 1 / 2 / 4 % of the side
  jpeg        JPEG re-encoding at quality 75 / 40 / 15
  crop        a random crop of 95 / 90 / 80 % of the side, resized back to the full side
  blend       alpha * image + (1 - alpha) * another used image, alpha 0.9 / 0.75 / 0.6
  combined    translate + rotate + scale + elastic + gamma + noise + blur + jpeg, all at that strength
  warp        (issue 23; medium / high) a turn, a rescaling and a shift drawn per copy up to 8 / 12 degrees,
              8 / 12 %, 6.25 / 10 % of the side, gamma within 1.1 / 1.25, noise sigma 2 / 4 %
  randcrop    (medium only) a crop of a random 85-95 % of the side, resized back
  sparse      sparse-0.5 / -1 / -2: warp-medium copies of 0.5 / 1 / 2 % of SPARSE_GENERATED generated
              images, the rest novel; labels.csv marks the copied images 1 and the never-used 0 (used
              images that were not copied are left out of it, so TPR counts the copies)
plus `identity-none` (exact copies), the control. Geometric transforms resample once (bilinear, border
padding), in torch; JPEG with Pillow.

Run (Fashion-MNIST: 1,000 real images no shared generator saw, novel images from the dev DDPM):
  .venv/bin/python benchmarks/make_gan_bench.py --out bench-local --exclude ../shared/bench/fmnist-ddpm-dev --real-only
  .venv/bin/python benchmarks/make_stress_bench.py --real bench-local/fmnist-real-other/real \\
      --novel ../shared/bench/fmnist-ddpm-dev/generated --out bench-local/stress-fmnist
  .venv/bin/python benchmarks/stress_table.py bench-local/stress-fmnist
MRI at 128 px (real: every slice of the two volumes the MRI DCGAN never saw; novel: that DCGAN's samples):
  .venv/bin/python benchmarks/make_ct_bench.py --out bench-local --holdout-only --sizes 128
  .venv/bin/python benchmarks/make_stress_bench.py --real bench-local/mri-holdout-128/real \\
      --novel bench-local/mri-volume-128/generated --out bench-local/stress-mri128
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import io
import json
import math
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

STRENGTHS = ("low", "medium", "high")
LEVELS = {  # per transform: the parameter at low / medium / high
    "translate": (0.02, 0.04, 0.08),
    "rotate": (2.5, 5.0, 10.0),
    "scale": (0.025, 0.05, 0.10),
    "elastic": (0.01, 0.02, 0.04),
    "gamma": ((1.15, 0.05), (1.3, 0.10), (1.6, 0.20)),
    "noise": (0.02, 0.05, 0.10),
    "blur": (0.01, 0.02, 0.04),
    "jpeg": (75, 40, 15),
    "crop": (0.95, 0.90, 0.80),
    "blend": (0.90, 0.75, 0.60),
}
COMBINED = ("translate", "rotate", "scale", "elastic", "gamma", "noise", "blur", "jpeg")
# issue 23: every copy turned, rescaled and moved at once by amounts drawn per image (uniform up to the
# bound), plus gamma and noise: (max degrees, max rescaling, max shift / side, gamma bound, noise sigma)
WARP = {
    "low": (4.0, 0.04, 0.03, 1.05, 0.01),
    "medium": (8.0, 0.08, 0.0625, 1.1, 0.02),
    "high": (12.0, 0.12, 0.10, 1.25, 0.04),
}
RANDOM_CROP = (0.85, 0.95)  # randcrop: a crop of a random 85-95 % of the side, resized back
SPARSE = {"0.5": 0.005, "1": 0.01, "2": 0.02}  # sparse-<pct>: warp-medium copies of this share of generated
SPARSE_GENERATED = 2000  # generated images of a sparse folder (copies + novel)
TRANSFORMS = (*LEVELS, "combined", "warp", "randcrop", "sparse")


# ------------------------------------------------------------------ transforms on float images in [0, 1]
def _sample_grid(img: torch.Tensor, theta: torch.Tensor, flow: torch.Tensor | None = None) -> torch.Tensor:
    """Resample img [1, 1, H, W] with the affine `theta` [1, 2, 3] (normalised coordinates) plus `flow`."""
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    if flow is not None:
        grid = grid + flow
    return F.grid_sample(img, grid, mode="bilinear", padding_mode="border", align_corners=False)


def geometric(
    img: np.ndarray,
    rng: np.random.Generator,
    shift: float = 0.0,
    angle: float = 0.0,
    scale: float = 0.0,
    elastic: float = 0.0,
) -> np.ndarray:
    """One resampling: shift (fraction of the side, random direction), rotation (degrees, random sign),
    isotropic scale (fraction, random sign), elastic displacement (max, fraction of the side)."""
    x = torch.from_numpy(img)[None, None].float()
    direction = rng.uniform(0, 2 * math.pi)
    # normalised coordinates span 2 over the side: a shift of s * side is 2 s
    tx, ty = 2 * shift * math.cos(direction), 2 * shift * math.sin(direction)
    a = math.radians(angle) * rng.choice([-1.0, 1.0])
    zoom = 1.0 + scale * rng.choice([-1.0, 1.0])
    # output pixel p samples the input at A p + t: a zoom by `zoom` samples at p / zoom
    c, s = math.cos(a) / zoom, math.sin(a) / zoom
    theta = torch.tensor([[[c, -s, -tx], [s, c, -ty]]], dtype=torch.float32)
    flow = None
    if elastic > 0:
        coarse = torch.from_numpy(rng.standard_normal((1, 2, 4, 4))).float()
        field = F.interpolate(coarse, size=img.shape, mode="bicubic", align_corners=True)
        field = field / field.norm(dim=1).max().clamp_min(1e-6) * (2 * elastic)
        flow = field.permute(0, 2, 3, 1)
    return _sample_grid(x, theta, flow)[0, 0].numpy()


def gamma_window(img: np.ndarray, rng: np.random.Generator, gamma: float, cut: float) -> np.ndarray:
    g = gamma if rng.random() < 0.5 else 1.0 / gamma
    lo, hi = rng.uniform(0, cut), 1.0 - rng.uniform(0, cut)
    return np.clip((np.clip(img, 0, 1) ** g - lo) / (hi - lo), 0, 1)


def noise(img: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    return img + rng.standard_normal(img.shape) * sigma


def blur(img: np.ndarray, rng: np.random.Generator, sigma_frac: float) -> np.ndarray:
    sigma = sigma_frac * img.shape[0]
    radius = max(1, int(math.ceil(3 * sigma)))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-0.5 * (t / max(sigma, 1e-3)) ** 2)
    k = (k / k.sum()).view(1, 1, -1)
    x = torch.from_numpy(np.ascontiguousarray(img)).float()[None, None]
    x = F.conv2d(F.pad(x, (radius, radius, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, radius, radius), mode="replicate"), k.view(1, 1, -1, 1))
    return x[0, 0].numpy()


def jpeg(img: np.ndarray, rng: np.random.Generator, quality: int) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img)).save(buf, format="JPEG", quality=int(quality))
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("L"), dtype=np.float32) / 255.0


def crop(img: np.ndarray, rng: np.random.Generator, keep: float) -> np.ndarray:
    side = img.shape[0]
    c = max(2, int(round(keep * side)))
    y0, x0 = (int(rng.integers(0, side - c + 1)) for _ in range(2))
    patch = Image.fromarray(to_uint8(img[y0 : y0 + c, x0 : x0 + c]))
    return np.asarray(patch.resize(img.shape[::-1], Image.BILINEAR), dtype=np.float32) / 255.0


def warp_copy(
    img: np.ndarray,
    rng: np.random.Generator,
    angle: float,
    scale: float,
    shift: float,
    gamma: float,
    sigma: float,
) -> np.ndarray:
    """The issue-23 copy: a turn, a rescaling and a shift drawn uniformly up to the bounds, then a gamma drawn
    log-uniformly in [1 / gamma, gamma] and Gaussian noise of sigma (one resampling)."""
    x = torch.from_numpy(img)[None, None].float()
    direction, radius = rng.uniform(0, 2 * math.pi), rng.uniform(0, shift)
    tx, ty = 2 * radius * math.cos(direction), 2 * radius * math.sin(direction)
    a = math.radians(rng.uniform(-angle, angle))
    zoom = 1.0 + rng.uniform(-scale, scale)
    c, s = math.cos(a) / zoom, math.sin(a) / zoom
    theta = torch.tensor([[[c, -s, -tx], [s, c, -ty]]], dtype=torch.float32)
    out = np.clip(_sample_grid(x, theta)[0, 0].numpy(), 0, 1) ** math.exp(
        rng.uniform(-1, 1) * math.log(gamma)
    )
    return out + rng.standard_normal(img.shape) * sigma


def to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.asarray(img) * 255.0, 0, 255).round().astype(np.uint8)


def transform(
    name: str, level: int, img: np.ndarray, other: np.ndarray, rng: np.random.Generator
) -> np.ndarray:
    """The copy of `img` (float [H, W] in [0, 1]) under transform `name` at strength index `level`."""
    p = {k: v[level] for k, v in LEVELS.items()}
    if name == "identity":
        return img
    if name == "translate":
        return geometric(img, rng, shift=p["translate"])
    if name == "rotate":
        return geometric(img, rng, angle=p["rotate"])
    if name == "scale":
        return geometric(img, rng, scale=p["scale"])
    if name == "elastic":
        return geometric(img, rng, elastic=p["elastic"])
    if name == "gamma":
        return gamma_window(img, rng, *p["gamma"])
    if name == "noise":
        return noise(img, rng, p["noise"])
    if name == "blur":
        return blur(img, rng, p["blur"])
    if name == "jpeg":
        return jpeg(img, rng, p["jpeg"])
    if name == "crop":
        return crop(img, rng, p["crop"])
    if name == "blend":
        return p["blend"] * img + (1 - p["blend"]) * other
    if name in ("warp", "sparse"):
        return warp_copy(img, rng, *WARP["medium" if name == "sparse" else STRENGTHS[level]])
    if name == "randcrop":
        return crop(img, rng, rng.uniform(*RANDOM_CROP))
    if name == "combined":
        out = geometric(img, rng, p["translate"], p["rotate"], p["scale"], p["elastic"])
        out = gamma_window(out, rng, *p["gamma"])
        out = blur(noise(out, rng, p["noise"]), rng, p["blur"])
        return jpeg(np.clip(out, 0, 1), rng, p["jpeg"])
    raise ValueError(f"unknown transform {name!r}")


# ------------------------------------------------------------------ folders
def read_folder(folder: Path, keep: set[str] | None = None) -> tuple[list[Path], np.ndarray]:
    files = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".tif", ".bmp"}
    )
    if keep is not None:
        files = [p for p in files if p.stem in keep]
    if not files:
        raise SystemExit(f"no images under {folder}")
    images = [np.asarray(Image.open(p).convert("L")) for p in files]
    sizes = {im.shape for im in images}
    if len(sizes) != 1:
        raise SystemExit(f"{folder}: images of several sizes {sorted(sizes)}")
    return files, np.stack(images)


def link_or_copy(src: Path, dst: Path) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


def volume_ids(real_dir: Path, volumes: list[str]) -> set[str]:
    """Ids of the real images of a benchmarks/make_ct_bench.py folder (its slices.csv, beside real/) that come
    from the given volumes: metadata of the build, no labels."""
    with (real_dir.parent / "slices.csv").open() as fh:
        return {row["id"] for row in csv.DictReader(fh) if row["volume"] in volumes}


def build(
    real_dir: Path,
    novel_dir: Path,
    out: Path,
    seed: int,
    transforms: list[str],
    log: Callable[[str], None] = print,
    keep: set[str] | None = None,
) -> list[str]:
    real_files, real = read_folder(real_dir, keep)
    _, novel = read_folder(novel_dir)
    side = real.shape[1:]
    if novel.shape[1:] != side:  # a generator of another size: resize its images to the real side
        novel = np.stack([np.asarray(Image.fromarray(im).resize(side[::-1], Image.BICUBIC)) for im in novel])
    rng = np.random.default_rng(seed)
    n = len(real)
    used = np.zeros(n, dtype=int)
    used[rng.permutation(n)[: n // 2]] = 1
    used_idx = np.flatnonzero(used)
    if len(novel) < len(used_idx):
        raise SystemExit(f"need at least {len(used_idx)} novel images, {novel_dir} has {len(novel)}")
    novel_pick = np.sort(rng.choice(len(novel), size=len(used_idx), replace=False))
    partner = used_idx[(np.arange(len(used_idx)) + 1 + rng.permutation(len(used_idx) - 1)[0]) % len(used_idx)]
    ids = [p.stem for p in real_files]
    written = []
    for spec in transforms:
        name, _, strength = spec.partition("-")
        level = STRENGTHS.index(strength) if strength in STRENGTHS else 1
        folder = out / spec
        if folder.exists():
            shutil.rmtree(folder)
        (folder / "real").mkdir(parents=True)
        (folder / "generated").mkdir()
        for p in real_files:
            link_or_copy(p, folder / "real" / p.name)
        # per-folder seeded transform parameters (the same copies every rebuild)
        t_rng = np.random.default_rng([seed, TRANSFORMS.index(name) if name in TRANSFORMS else 99, level])
        copied, pick, truth = used_idx, novel_pick, used
        if name == "sparse":  # a generator that memorised a handful of its training images
            n_copies = max(1, round(SPARSE[strength] * SPARSE_GENERATED))
            if len(novel) < SPARSE_GENERATED - n_copies:
                raise SystemExit(f"a sparse folder needs {SPARSE_GENERATED - n_copies} novel images")
            copied = np.sort(np.random.default_rng([seed, 11]).permutation(used_idx)[:n_copies])
            pick = np.sort(
                np.random.default_rng([seed, 12]).choice(len(novel), SPARSE_GENERATED - n_copies, False)
            )
            truth = np.where(used == 0, 0, -1)
            truth[copied] = (
                1  # labels: the copied images 1, the never used 0; used but not copied: unlabelled
            )
        labelled = [(i, u) for i, u in zip(ids, truth) if u >= 0]
        (folder / "labels.csv").write_text("id,used\n" + "".join(f"{i},{u}\n" for i, u in labelled))
        copies = [
            to_uint8(transform(name, level, real[i] / 255.0, real[j] / 255.0, t_rng))
            for i, j in zip(copied, partner[np.searchsorted(used_idx, copied)])
        ]
        generated = np.concatenate([np.stack(copies), novel[pick]])
        order = np.random.default_rng([seed, 7]).permutation(len(generated))
        for k, j in enumerate(order, start=1):
            Image.fromarray(generated[j]).save(folder / "generated" / f"g{k:05d}.png")
        meta = {
            "suite": "copy-transform stress suite",
            "transform": name,
            "strength": strength,
            "parameter": parameter(name, strength),
            "real": str(real_dir),
            "novel_from": str(novel_dir),
            "n_real": n,
            "n_used": int(used.sum()),
            "n_copies": len(copied),
            "n_novel": len(pick),
            "image_size": list(side),
            "seed": seed,
            "date": dt.date.today().isoformat(),
            "made_by": "benchmarks/make_stress_bench.py",
        }
        (folder / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        written.append(spec)
        log(f"wrote {folder}")
    return written


def parameter(name: str, strength: str) -> object:
    """What meta.json records of a folder's transform."""
    if name == "identity":
        return None
    if name in ("warp", "sparse"):
        keys = ("max_degrees", "max_rescale", "max_shift", "gamma_bound", "noise_sigma")
        bounds = dict(zip(keys, WARP["medium" if name == "sparse" else strength]))
        return {**bounds, "share_of_generated": SPARSE[strength]} if name == "sparse" else bounds
    if name == "randcrop":
        return {"keep": list(RANDOM_CROP)}
    level = STRENGTHS.index(strength)
    return {k: LEVELS[k][level] for k in COMBINED} if name == "combined" else LEVELS[name][level]


def all_specs() -> list[str]:
    classic = [f"{t}-{s}" for t in (*LEVELS, "combined") for s in STRENGTHS]
    return [
        "identity-none",
        *classic,
        *[f"warp-{s}" for s in ("medium", "high")],
        "randcrop-medium",
        *[f"sparse-{p}" for p in SPARSE],
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--real", type=Path, required=True, help="folder of real images (all become candidates)")
    ap.add_argument(
        "--novel", type=Path, required=True, help="generated images of a generator that never saw --real"
    )
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument(
        "--only", default=None, help="comma-separated folder names (e.g. rotate-medium); default all"
    )
    ap.add_argument(
        "--real-volumes",
        default=None,
        help="keep only the real images of these volumes (comma-separated; needs slices.csv beside "
        "--real, as benchmarks/make_ct_bench.py writes it)",
    )
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    specs = args.only.split(",") if args.only else all_specs()
    unknown = sorted(set(specs) - set(all_specs()))
    if unknown:
        raise SystemExit(f"unknown folder(s) {', '.join(unknown)}; choose from {', '.join(all_specs())}")
    keep = volume_ids(args.real, args.real_volumes.split(",")) if args.real_volumes else None
    build(args.real, args.novel, args.out, args.seed, specs, keep=keep)


if __name__ == "__main__":
    main()
