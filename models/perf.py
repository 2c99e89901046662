"""`synthaudit perf`: throughput of every audit stage on a synthetic workload, against a measured ceiling.

The workload (default: the challenge's size, 6,000 real + 10,000 generated 256x256 grayscale images)
is generated on the fly and written as PNG files, then the audit's own stages run on it through
models.stages.run_stage, once per method (default: `paper`, the MAE path with pretraining at its
default budget, and `default`). Per stage: seconds, images/s, peak GPU memory, and the share of the
ceiling, a bare loop measured in the same run on random tensors of the same shapes (MAE forward +
backward + AdamW step for pretraining, MAE forward for embedding, the raw similarity matmuls for
search). With FAISS installed it also measures the IVF index's recall@k against the exact one.

Needs only torch, timm, numpy, pillow and safetensors (the GPU host has nothing else): run it as
`synthaudit perf`, `python3 -m models.perf` or `python3 benchmarks/perf.py`.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from synthaudit.models.config import AuditConfig
from synthaudit.models.device import autocast_context, resolve_device
from synthaudit.models.workdir import DECODED, REJECTED, WorkDir

STAGE_NAMES = ("decode", "pretrain", "embed", "search", "decide")
CEILING_STEPS = 10
CEILING_WARMUP = 2
CEILING_BUDGET_S = 20.0


# --- the workload -----------------------------------------------------------------------------------


def synthetic_images(n: int, size: int, generator: torch.Generator, chunk: int = 512) -> np.ndarray:
    """n grayscale uint8 [size, size] images: smooth random anatomy-like fields inside a body disc."""
    out = np.empty((n, size, size), np.uint8)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    body = ((xx / 0.9) ** 2 + (yy / 0.75) ** 2 < 1).float()
    for start in range(0, n, chunk):
        b = min(chunk, n - start)
        coarse = torch.rand(b, 1, 8, 8, generator=generator)
        fine = torch.rand(b, 1, 32, 32, generator=generator)
        x = 0.75 * F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
        x = x + 0.25 * F.interpolate(fine, size=(size, size), mode="bilinear", align_corners=False)
        x = (x.squeeze(1) * body).clamp(0, 1)
        out[start : start + b] = (255 * x).round().to(torch.uint8).numpy()
    return out


def make_workload(
    n_real: int, n_generated: int, size: int, seed: int = 0, shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Real and generated sets; a fifth of the generated images are noisy copies of real ones (leaks),
    each shifted by `shift` of the side in a seeded random direction when `shift` > 0 (copies that are not
    pixel-aligned: the workload on which the default's alignment gate fires)."""
    generator = torch.Generator().manual_seed(seed)
    real = synthetic_images(n_real, size, generator)
    n_copies = min(n_real, n_generated // 5)
    fresh = synthetic_images(n_generated - n_copies, size, generator)
    rng = np.random.default_rng(seed)
    sources = rng.choice(n_real, n_copies, replace=False) if n_copies else np.zeros(0, np.int64)
    noise = rng.integers(-6, 7, (n_copies, size, size))
    copies = np.clip(real[sources].astype(np.int16) + noise, 0, 255).astype(np.uint8)
    if shift > 0 and n_copies:
        copies = shifted(copies, shift * size, rng)
    generated = np.concatenate([copies, fresh]) if n_copies else fresh
    return real, generated[rng.permutation(len(generated))]


SHIFT_DIRECTIONS = 16  # copies are shifted along one of these directions, drawn per copy


def shifted(images: np.ndarray, pixels: float, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by `pixels` along a random one of SHIFT_DIRECTIONS directions (bilinear)."""
    from synthaudit.models.alignment import warp

    out = images.copy()
    direction = rng.integers(0, SHIFT_DIRECTIONS, len(images))
    for d in range(SHIFT_DIRECTIONS):
        rows = np.flatnonzero(direction == d)
        angle = 2 * np.pi * d / SHIFT_DIRECTIONS
        out[rows] = warp(images[rows], pixels * float(np.cos(angle)), pixels * float(np.sin(angle)), 0.0, 1.0)
    return out


def write_pngs(images: np.ndarray, folder: Path, prefix: str) -> None:
    """images as folder/<prefix><i>.png (fast zlib level, all cores)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    width = len(str(len(images)))

    def write(i: int) -> None:
        Image.fromarray(images[i]).save(folder / f"{prefix}{i:0{width}d}.png", compress_level=1)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        list(pool.map(write, range(len(images))))


# --- measuring --------------------------------------------------------------------------------------


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)


def _peak_mib(device: torch.device) -> float | None:
    if device.type != "cuda":
        return None
    return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)


def _rss_mib() -> float | None:
    try:
        import resource

        scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB elsewhere
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20, 1)
    except (ImportError, OSError):
        return None


def _timed_loop(step: Any, device: torch.device, steps: int, warmup: int = CEILING_WARMUP) -> float:
    """Seconds per step of step() after warmup steps: `steps` steps, or fewer (at least 2) once
    CEILING_BUDGET_S has passed (a slow CPU)."""
    for _ in range(min(warmup, steps)):
        step()
    _sync(device)
    started, done = time.perf_counter(), 0
    while done < steps and (done < 2 or time.perf_counter() - started < CEILING_BUDGET_S):
        step()
        done += 1
    _sync(device)
    return (time.perf_counter() - started) / done


def pretrain_ceiling(preset: str, batch: int, device: torch.device, mask_ratio: float, steps: int) -> float:
    """Images/s of a bare MAE forward + backward + AdamW step on random tensors of the training shape."""
    from synthaudit.models.mae import MAE_PRESETS, create_mae

    cfg = MAE_PRESETS[preset]
    model = create_mae(cfg).to(device).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=device.type == "cuda")
    x = torch.randn(batch, cfg.in_chans, cfg.img_size, cfg.img_size, device=device)
    gen = torch.Generator(device=device).manual_seed(0)

    def step() -> None:
        with autocast_context(device):
            loss, _, _ = model(x, mask_ratio=mask_ratio, generator=gen)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return batch / _timed_loop(step, device, steps)


def embed_ceiling(preset: str, batch: int, device: torch.device, steps: int) -> float:
    """Images/s of a bare MAE encoder forward (global features) on random tensors of the input shape."""
    from synthaudit.models.mae import MAE_PRESETS, create_mae

    cfg = MAE_PRESETS[preset]
    model = create_mae(cfg).to(device).eval()
    x = torch.randn(batch, cfg.in_chans, cfg.img_size, cfg.img_size, device=device)

    def step() -> None:
        with torch.inference_mode(), autocast_context(device):
            model.global_features(x)

    return batch / _timed_loop(step, device, steps)


def search_ceiling(n_real: int, n_generated: int, dim: int, device: torch.device) -> float:
    """(real + generated)/s of the bare similarity matmuls the search stage needs (rg, rr, gr), fp32."""
    g = torch.Generator(device=device).manual_seed(0)
    real = F.normalize(torch.randn(n_real, dim, device=device, generator=g), dim=1)
    gen = F.normalize(torch.randn(n_generated, dim, device=device, generator=g), dim=1)

    def step() -> None:
        for q, b in ((real, gen), (real, real), (gen, real)):
            for lo in range(0, len(q), 4096):
                (q[lo : lo + 4096] @ b.T).amax(dim=1)

    return (n_real + n_generated) / _timed_loop(step, device, steps=2, warmup=1)


def ivf_recall(real: np.ndarray, generated: np.ndarray, k: int) -> dict[str, Any] | None:
    """recall@k of the IVF index (nlist ~ sqrt(M)) against exact search, at the default nprobe (through
    models.index.search) and at a sweep of nprobe values (FAISS alone); with timings. Needs faiss."""
    from synthaudit.models import index

    if index.faiss is None:
        return None
    started = time.perf_counter()
    exact = index.search(real, generated, k)[1]
    t_exact = time.perf_counter() - started
    started = time.perf_counter()
    approx = index.search(real, generated, k, ivf_min_size=1)[1]
    t_ivf = time.perf_counter() - started

    def recall(found: np.ndarray) -> float:
        return round(
            float(np.mean([len(set(a) & set(e)) / len(e) for a, e in zip(found.tolist(), exact.tolist())])), 4
        )

    nlist, nprobe = index.ivf_params(len(generated))
    q, b = index._normalised(real), index._normalised(generated)
    ivf = index._build_ivf(b, "cosine", nlist, nprobe)
    sweep = []
    for probes in sorted({max(1, nlist // 16), max(1, nlist // 8), nprobe, max(1, nlist // 2)}):
        ivf.nprobe = probes
        started = time.perf_counter()
        found = ivf.search(q, k)[1]
        sweep.append(
            {
                "nprobe": probes,
                "recall_at_k": recall(found),
                "seconds": round(time.perf_counter() - started, 4),
            }
        )
    return {
        "k": k,
        "n_queries": len(real),
        "n_base": len(generated),
        "dim": int(real.shape[1]),
        "nlist": nlist,
        "nprobe": nprobe,
        "recall_at_k": recall(approx),
        "seconds_exact": round(t_exact, 3),
        "seconds_ivf": round(t_ivf, 3),
        "nprobe_sweep": sweep,
    }


# --- the run ----------------------------------------------------------------------------------------


def _row(
    stage: str, seconds: float, images: int, peak: float | None, ceiling: float | None
) -> dict[str, Any]:
    rate = images / seconds if seconds > 0 else None
    return {
        "stage": stage,
        "seconds": round(seconds, 3),
        "images": images,
        "images_per_s": round(rate, 1) if rate else None,
        "gpu_peak_mib": peak,
        "rss_max_mib": _rss_mib(),
        "ceiling_images_per_s": round(ceiling, 1) if ceiling else None,
        "share_of_ceiling": round(rate / ceiling, 3) if rate and ceiling else None,
    }


def run_method(
    method: str,
    base: AuditConfig,
    real_dir: Path,
    gen_dir: Path,
    workdir: Path,
    decoded: Path | None,
    args: Any,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """All five stages of one method; per-stage rows and extras (IVF recall, pretraining figures)."""
    from synthaudit.models.pretrain import read_checkpoint_metadata
    from synthaudit.models.stages import AuditInputs, _load_npz, read_alignment, run_stage

    config = replace(base, method=method)
    device = resolve_device(config.device)
    inputs = AuditInputs(real_dir, gen_dir)
    workdir.mkdir(parents=True, exist_ok=True)
    folder = WorkDir(workdir)
    rows: list[dict[str, Any]] = []
    extra: dict[str, Any] = {}
    n_real = n_gen = 0
    for stage in STAGE_NAMES:
        if stage == "decode" and decoded is not None:  # decoded once for every method
            for name in (DECODED, REJECTED):
                (workdir / name).symlink_to(decoded.parent / name)
            run_stage(stage, workdir, inputs, config)  # pins the config; the artifact is there
            continue
        _reset_peak(device)
        started = time.perf_counter()
        run_stage(stage, workdir, inputs, config)
        _sync(device)
        seconds = time.perf_counter() - started
        peak = _peak_mib(device)
        if stage == "decode":
            with np.load(folder.decoded) as data:
                n_real, n_gen = len(data["real_ids"]), len(data["generated_ids"])
        if not n_real:
            with np.load(folder.decoded) as data:
                n_real, n_gen = len(data["real_ids"]), len(data["generated_ids"])
        images, ceiling = n_real + n_gen, None
        checkpoint = folder.mae_checkpoint
        if stage == "pretrain" and checkpoint.exists():
            meta = read_checkpoint_metadata(checkpoint)
            steps, seen = int(meta.get("steps") or 0), int(meta.get("images_seen") or 0)
            batch = max(1, seen // max(1, steps))
            images = seen
            ceiling = pretrain_ceiling(config.mae_preset, batch, device, 0.75, args.ceiling_steps)
            extra["pretrain"] = {
                "steps": steps,
                "images_seen": seen,
                "batch_size": batch,
                "final_loss": meta.get("final_loss"),
            }
        elif stage == "embed" and checkpoint.exists():
            batch = _embed_batch(config, device, checkpoint)
            ceiling = embed_ceiling(config.mae_preset, batch, device, args.ceiling_steps)
            extra["embed_batch_size"] = batch
        elif stage == "search":
            features = _load_npz(folder.features)
            dim = max(v.shape[1] for v in features.values())
            ceiling = search_ceiling(n_real, n_gen, dim, device)
            if not args.no_ivf:
                name = min(k for k in features if k.endswith("/real")).rsplit("/", 1)[0]
                extra["ivf"] = ivf = ivf_recall(
                    features[f"{name}/real"], features[f"{name}/generated"], config.k
                )
                if ivf:
                    print(
                        f"{method:>10} IVF recall@{ivf['k']} {ivf['recall_at_k']:.3f} (nlist {ivf['nlist']}, "
                        f"nprobe {ivf['nprobe']}; {ivf['seconds_ivf']:.2f} s vs exact {ivf['seconds_exact']:.2f} s)"
                    )
            record = read_alignment(workdir)
            if record is not None:  # what the default's alignment gate did on this workload
                extra["alignment"] = record["views"]
                for key, view in extra["alignment"].items():
                    gate = "fired" if view["fired"] else "closed"
                    probe = ""
                    if "probe_share" in view:
                        opened = "fired" if view["probe_fired"] else "closed"
                        probe = f", probe {opened} (share {view['probe_share']:.3f})"
                    print(
                        f"{method:>10} alignment gate {gate} on {key} (share {view['share']:.3f}){probe}; "
                        f"{view.get('versions', 1)} version(s) searched"
                    )
        elif stage == "decide":
            images = n_real
        rows.append(_row(stage, seconds, images, peak, ceiling))
        print(_format_row(method, rows[-1]), flush=True)
    extra["end_to_end_s"] = round(sum(r["seconds"] for r in rows), 3)
    return rows, extra


def _embed_batch(config: AuditConfig, device: torch.device, checkpoint: Path) -> int:
    """The batch the embed stage used: the configured one on CPU, the memory-derived one on CUDA."""
    if device.type != "cuda":
        return config.batch_size
    from synthaudit.models.embed import _cuda_batch
    from synthaudit.models.encoders.mae import MAEEncoder

    encoder = MAEEncoder(checkpoint, device=str(device))
    probe = np.zeros((32, config.image_size, config.image_size), np.uint8)
    with torch.inference_mode(), autocast_context(device):
        return max(config.batch_size, _cuda_batch(encoder._features, probe, device))


def _format_row(method: str, r: dict[str, Any]) -> str:
    def fmt(v: Any, spec: str) -> str:
        return "-" if v is None else format(v, spec)

    return (
        f"{method:>10} {r['stage']:>9} {r['seconds']:9.2f} s {fmt(r['images_per_s'], '10.1f')} img/s "
        f"gpu {fmt(r['gpu_peak_mib'], '8.0f')} MiB  ceiling {fmt(r['ceiling_images_per_s'], '10.1f')} img/s "
        f"share {fmt(r['share_of_ceiling'], '6.3f')}"
    )


def machine() -> dict[str, Any]:
    """What ran the benchmark."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    try:
        import faiss  # noqa: F401

        info["faiss"] = True
    except ImportError:
        info["faiss"] = False
    return info


def ivf_on_features(path: str, k: int) -> dict[str, Any]:
    """IVF recall@k on the features.npz of an audit (every encoder in it)."""
    out = {}
    with np.load(path) as data:
        for key in sorted(data.files):
            if key.endswith("/real"):
                name = key.rsplit("/", 1)[0]
                out[name] = result = ivf_recall(data[key], data[f"{name}/generated"], k)
                print(f"{name}: {json.dumps(result)}")
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    """The whole benchmark; returns the JSON report."""
    if args.ivf_features:
        return {"ivf": ivf_on_features(args.ivf_features, AuditConfig().k)}
    base = AuditConfig(
        device=args.device, seed=args.seed, pretrain_images_seen=args.images_seen, compile=args.compile
    )
    device = resolve_device(base.device)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    tmp = Path(tempfile.mkdtemp(prefix="synthaudit-perf-", dir=args.tmp))
    try:
        started = time.perf_counter()
        real, generated = make_workload(args.real, args.generated, args.size, args.seed, args.shifted_copies)
        write_pngs(real, tmp / "real", "r")
        write_pngs(generated, tmp / "generated", "g")
        prepare = time.perf_counter() - started
        del real, generated
        print(
            f"workload: {args.real} real + {args.generated} generated {args.size}x{args.size} PNGs "
            f"written in {prepare:.1f} s; device {device}",
            flush=True,
        )
        results: dict[str, Any] = {}
        decoded: Path | None = None
        for method in methods:
            rows, extra = run_method(
                method, base, tmp / "real", tmp / "generated", tmp / f"work-{method}", decoded, args
            )
            if decoded is None:
                decoded = WorkDir(tmp / f"work-{method}").decoded
            else:  # decode ran once: count it in every method's end-to-end time
                extra["end_to_end_s"] = round(
                    extra["end_to_end_s"] + results[methods[0]]["stages"][0]["seconds"], 3
                )
                rows.insert(0, dict(results[methods[0]]["stages"][0], shared_with=methods[0]))
            results[method] = {"stages": rows, **extra}
            print(f"{method:>10} end to end {extra['end_to_end_s']:.1f} s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report = {
        "command": getattr(args, "command_line", None) or " ".join(["python3 -m models.perf", *sys.argv[1:]]),
        "date": _dt.date.today().isoformat(),
        "workload": {
            "real": args.real,
            "generated": args.generated,
            "size": args.size,
            "seed": args.seed,
            "shifted_copies": args.shifted_copies,
        },
        "config": {**base.to_dict(), "methods": methods},
        "machine": machine(),
        "prepare_s": round(prepare, 3),
        "methods": results,
    }
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "perf.json").write_text(json.dumps(report, indent=2, default=float))
        print(f"wrote {out / 'perf.json'}")
    return report


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The perf options (shared by `synthaudit perf` and `python3 -m models.perf`)."""
    parser.add_argument("--real", type=int, default=6000, help="real images (default: the challenge's 6,000)")
    parser.add_argument("--generated", type=int, default=10000, help="generated images (default 10,000)")
    parser.add_argument("--size", type=int, default=256, help="side of the synthetic images (default 256)")
    parser.add_argument(
        "--methods",
        default="paper,default",
        help="audit methods to run (default: paper = MAE pretraining + embedding, and default)",
    )
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda")
    parser.add_argument(
        "--images-seen",
        type=int,
        default=None,
        help="MAE pretraining budget (default: the audit's default budget)",
    )
    parser.add_argument(
        "--ceiling-steps", type=int, default=CEILING_STEPS, help="timed steps of each ceiling loop"
    )
    parser.add_argument("--compile", action="store_true", help="torch.compile the MAE blocks")
    parser.add_argument("--no-ivf", action="store_true", help="skip the IVF recall measurement")
    parser.add_argument(
        "--shifted-copies",
        type=float,
        default=0.0,
        metavar="FRACTION",
        help="shift the leaked copies by this fraction of the side (e.g. 0.03; default 0: aligned copies)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tmp", default=None, help="folder for the temporary PNGs and work folders")
    parser.add_argument("--out", default=None, help="write the table as DIR/perf.json")
    parser.add_argument(
        "--ivf-features",
        default=None,
        metavar="FEATURES_NPZ",
        help="only measure IVF recall on an audit's features.npz (real -> generated, per encoder)",
    )


def main(argv: list[str] | None = None, prog: str = "python3 -m models.perf") -> int:
    """`python3 -m models.perf` (and `synthaudit perf`)."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.splitlines()[0])
    add_arguments(parser)
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command_line = " ".join([prog, *argv])
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
