"""Self-supervised MAE pretraining on the audited images, and safetensors checkpoints."""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from synthaudit.models.device import (
    auto_batch_size,
    autocast_context,
    configure_cuda,
    maybe_compile,
    resolve_device,
)
from synthaudit.models.mae import MAE_PRESETS, MAEConfig, MaskedAutoencoder, create_mae

ProgressFn = Callable[[float], None] | None
CHECKPOINT_FORMAT = "synthaudit-mae/1"

# Default budget (images seen) when neither epochs nor images_seen is given: at least
# EPOCHS_MIN passes over the set and MIN_IMAGES_SEEN images, capped per device so that a
# 4,000-image CPU audit stays within minutes.
EPOCHS_MIN = 10
MIN_IMAGES_SEEN = 20_000
MAX_IMAGES_SEEN = {"cpu": 40_000, "cuda": 1_000_000}
GPU_EPOCHS_MIN = 100
CPU_BATCH = 128  # the CPU batch (and the CUDA batch when memory allows no more)
GPU_MAX_BATCH = 512  # lr scales with the batch (base_lr * B / 256): keep it in the range MAE was tuned for
GPU_DATA_FRACTION = 0.25  # keep the uint8 set on the GPU when it takes at most this share of free memory
GPU_SYNC_EVERY = 25  # CUDA: read the losses back every this many steps (no per-step host sync)


class CheckpointError(ValueError):
    """A checkpoint file is missing, not safetensors, or not an MAE checkpoint."""


@dataclass
class PretrainConfig:
    """Hyper-parameters of MAE pretraining (AdamW, cosine schedule with linear warmup)."""

    preset: str = "mae_tiny_patch8_64"
    epochs: int | None = None
    images_seen: int | None = None
    batch_size: int | None = None  # None: CPU_BATCH on CPU, chosen from free GPU memory on CUDA
    base_lr: float = 1.5e-3  # lr = base_lr * batch_size / 256
    lr: float | None = None  # absolute lr; overrides base_lr when set
    min_lr_ratio: float = 0.01
    warmup_fraction: float = 0.05
    weight_decay: float = 0.05
    mask_ratio: float = 0.75
    seed: int = 0
    device: str = "auto"
    augment: bool = True
    crop_scale: tuple[float, float] = (0.6, 1.0)
    early_stop: bool = True
    patience: int = 3  # windows without relative improvement >= min_rel_improvement
    plateau_window: int | None = None  # steps per loss window; None: max(10, steps per epoch)
    min_rel_improvement: float = 0.01
    compile: bool = False  # torch.compile the transformer blocks (worth it on GPU for long runs)

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict (JSON) form."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PretrainConfig:
        """Build from a dict, ignoring unknown keys."""
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in known}
        if "crop_scale" in kwargs:
            kwargs["crop_scale"] = tuple(kwargs["crop_scale"])
        return cls(**kwargs)

    def learning_rate(self, batch_size: int | None = None) -> float:
        """Peak learning rate (absolute lr, or base_lr scaled by batch/256)."""
        batch = batch_size or self.batch_size or CPU_BATCH
        return self.lr if self.lr is not None else self.base_lr * batch / 256


def default_images_seen(n_images: int, device: torch.device | str = "cpu") -> int:
    """Default pretraining budget in images seen for a set of n_images on device."""
    kind = torch.device(device).type
    epochs_min = GPU_EPOCHS_MIN if kind == "cuda" else EPOCHS_MIN
    cap = MAX_IMAGES_SEEN.get(kind, MAX_IMAGES_SEEN["cpu"])
    return int(min(max(epochs_min * n_images, MIN_IMAGES_SEEN), cap))


def budget_images(config: PretrainConfig, n_images: int, device: torch.device | str) -> int:
    """Images to see: images_seen if given, else epochs * N, else the default budget."""
    if config.images_seen is not None:
        return int(config.images_seen)
    if config.epochs is not None:
        return int(config.epochs) * n_images
    return default_images_seen(n_images, device)


# ---------------------------------------------------------------- preprocessing
def normalisation_stats(images: np.ndarray) -> dict[str, float]:
    """Mean and std of pixel values scaled to [0, 1] over the whole set."""
    x = np.asarray(images, dtype=np.float64) / 255.0
    return {"mean": float(x.mean()), "std": float(max(x.std(), 1e-3))}


def to_model_input(
    batch: torch.Tensor, img_size: int, mean: float, std: float, device: torch.device | None = None
) -> torch.Tensor:
    """uint8 [B, S, S] -> normalised float [B, 1, img_size, img_size] (bilinear, antialiased)."""
    x = batch.to(device) if device is not None else batch
    x = x.float().unsqueeze(1) / 255.0  # [B, 1, S, S]
    if x.shape[-1] != img_size or x.shape[-2] != img_size:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False, antialias=True)
    return (x - mean) / std


def random_resized_crop(
    x: torch.Tensor, img_size: int, scale: tuple[float, float], generator: torch.Generator
) -> torch.Tensor:
    """Per-sample random resized crop (area in scale, aspect 3/4..4/3) plus horizontal flip.

    x: [B, 1, S, S] float -> [B, 1, img_size, img_size]; random numbers come from generator (CPU).
    """
    b = x.shape[0]
    u = torch.rand(b, 5, generator=generator)  # area, log-aspect, cx, cy, flip
    area = scale[0] + (scale[1] - scale[0]) * u[:, 0]
    log_r = math.log(3 / 4) + (math.log(4 / 3) - math.log(3 / 4)) * u[:, 1]
    w = torch.sqrt(area * log_r.exp()).clamp(max=1.0)  # crop width as a fraction of the image
    h = torch.sqrt(area / log_r.exp()).clamp(max=1.0)
    cx = (1 - w) * (2 * u[:, 2] - 1)  # centre in [-1, 1] normalised coordinates
    cy = (1 - h) * (2 * u[:, 3] - 1)
    flip = torch.where(u[:, 4] < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = w * flip, cx
    theta[:, 1, 1], theta[:, 1, 2] = h, cy
    theta = _to_device(theta, x.device).to(x.dtype)
    if x.shape[-1] > 2 * img_size:  # avoid aliasing when sampling a much larger image
        x = F.interpolate(x, size=(2 * img_size, 2 * img_size), mode="bilinear", antialias=True)
    grid = F.affine_grid(theta, [b, 1, img_size, img_size], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _to_device(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A small CPU tensor to device; on CUDA through pinned memory, without a host sync."""
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


# ---------------------------------------------------------------- training loop
def _index_stream(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless full batches of indices drawn from successive random permutations."""
    buffer = torch.empty(0, dtype=torch.long)
    while True:
        while buffer.numel() < batch_size:
            buffer = torch.cat([buffer, torch.randperm(n, generator=generator)])
        yield buffer[:batch_size]
        buffer = buffer[batch_size:]


def lr_at(step: int, total: int, peak: float, warmup: int, min_ratio: float) -> float:
    """Linear warmup to peak, then cosine decay to peak * min_ratio."""
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def _make_optimizer(model: MaskedAutoencoder, config: PretrainConfig, device: torch.device, lr: float):
    """AdamW (fused on CUDA) with no weight decay on biases, norms and tokens."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        (no_decay if p.ndim <= 1 or name.endswith("_token") else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), fused=device.type == "cuda")


class _PlateauStopper:
    """Stops when the windowed mean loss has not improved by min_rel for patience windows."""

    def __init__(self, window: int, patience: int, min_rel: float):
        self.window, self.patience, self.min_rel = window, patience, min_rel
        self.best, self.bad = math.inf, 0
        self.buffer: list[float] = []

    def update(self, loss: float) -> bool:
        """Record one step's loss; True when training should stop."""
        self.buffer.append(loss)
        if len(self.buffer) < self.window:
            return False
        mean, self.buffer = float(np.mean(self.buffer)), []
        if mean < self.best * (1 - self.min_rel):
            self.best, self.bad = mean, 0
        else:
            self.bad += 1
        return self.bad >= self.patience


def pretrain_mae(
    images: np.ndarray, config: PretrainConfig | None = None, on_progress: ProgressFn = None
) -> tuple[MaskedAutoencoder, list[float]]:
    """Pretrain an MAE on uint8 images [N, S, S]; returns (model in eval mode, per-step losses).

    The budget is a number of images seen (see budget_images). On CUDA: the uint8 set stays on the
    GPU when it fits (else pinned host memory), bf16 autocast, fused AdamW, the batch chosen from
    free memory, losses read back every GPU_SYNC_EVERY steps; optional torch.compile of the blocks.
    The model gets `images_seen` and `train_batch_size` attributes.
    """
    config = config or PretrainConfig()
    images = np.asarray(images)
    if images.ndim != 3 or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError(f"expected uint8 images [N, S, S], got {images.dtype} {images.shape}")
    if config.preset not in MAE_PRESETS:
        raise ValueError(f"unknown MAE preset {config.preset!r}; choose from {sorted(MAE_PRESETS)}")
    device = resolve_device(config.device)
    configure_cuda(device)
    mae_cfg: MAEConfig = MAE_PRESETS[config.preset]
    stats = normalisation_stats(images)

    torch.manual_seed(config.seed)
    model = create_mae(mae_cfg).to(device)
    model.normalisation = stats
    model.train()

    n = len(images)
    configured_batch = train_batch_size(model, config, device)
    batch_size = min(configured_batch, n)
    peak_lr = config.learning_rate(configured_batch)
    optimizer = _make_optimizer(model, config, device, peak_lr)
    maybe_compile(model, config.compile)
    total_steps = max(1, math.ceil(budget_images(config, n, device) / batch_size))
    warmup = max(1, int(config.warmup_fraction * total_steps))
    steps_per_epoch = max(1, n // batch_size)
    window = config.plateau_window or max(10, steps_per_epoch)
    stopper = _PlateauStopper(window, config.patience, config.min_rel_improvement)

    data = _device_data(images, device)
    shuffle_gen = torch.Generator().manual_seed(config.seed)
    aug_gen = torch.Generator().manual_seed(config.seed + 1)
    mask_gen = torch.Generator(device=device).manual_seed(config.seed + 2)
    batches = _index_stream(n, batch_size, shuffle_gen)
    sync_every = GPU_SYNC_EVERY if device.type == "cuda" else 1

    losses: list[float] = []
    pending: list[torch.Tensor] = []
    stop = False
    for step in range(total_steps):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, total_steps, peak_lr, warmup, config.min_lr_ratio)
        idx = next(batches)
        if data.device.type == "cuda":  # the set lives on the GPU
            batch = data[_to_device(idx, data.device)]
        else:  # CPU, or CUDA with the set in pinned host memory (pinned batch: asynchronous copy)
            batch = data[idx].pin_memory() if device.type == "cuda" else data[idx]
        x = _training_batch(batch, mae_cfg.img_size, stats, config, aug_gen, device)
        with autocast_context(device):
            loss, _, _ = model(x, mask_ratio=config.mask_ratio, generator=mask_gen)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        pending.append(loss.detach())
        if len(pending) >= sync_every or step == total_steps - 1:
            first = step + 1 - len(pending)
            values = torch.stack(pending).float().cpu().tolist() if len(pending) > 1 else [float(pending[0])]
            pending = []
            for offset, value in enumerate(values):
                if not math.isfinite(value):
                    raise FloatingPointError(
                        f"MAE loss became {value} at step {first + offset}; lower the learning rate"
                    )
                losses.append(value)
                if config.early_stop and first + offset >= warmup and stopper.update(value):
                    stop = True
        if on_progress is not None:
            on_progress((step + 1) / total_steps)
        if stop:
            break
    if on_progress is not None and len(losses) < total_steps:
        on_progress(1.0)
    model.eval()
    model.images_seen = len(losses) * batch_size
    model.train_batch_size = batch_size
    return model, losses


def train_batch_size(model: MaskedAutoencoder, config: PretrainConfig, device: torch.device) -> int:
    """The configured batch; else CPU_BATCH on CPU, or the largest that fits free GPU memory on CUDA."""
    if config.batch_size is not None:
        return int(config.batch_size)
    if device.type != "cuda":
        return CPU_BATCH
    size = model.config.img_size
    probe_gen = torch.Generator(device=device).manual_seed(0)

    def step(b: int) -> None:
        x = torch.randn(b, model.config.in_chans, size, size, device=device)
        with autocast_context(device):
            loss, _, _ = model(x, mask_ratio=config.mask_ratio, generator=probe_gen)
        loss.backward()
        model.zero_grad(set_to_none=True)

    return auto_batch_size(device, CPU_BATCH, step, cap=GPU_MAX_BATCH, fraction=0.5)


def _device_data(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """The uint8 set where batches are drawn from: on the GPU when it fits, else (pinned) host memory."""
    data = torch.from_numpy(images)
    if device.type != "cuda":
        return data
    free, _ = torch.cuda.mem_get_info(device)
    if data.numel() <= GPU_DATA_FRACTION * free:
        return data.to(device)
    return data.pin_memory()


def _training_batch(
    batch: torch.Tensor,
    img_size: int,
    stats: dict[str, float],
    config: PretrainConfig,
    generator: torch.Generator,
    device: torch.device,
) -> torch.Tensor:
    """uint8 [B, S, S] -> augmented, resized, normalised float [B, 1, img_size, img_size]."""
    x = batch.to(device, non_blocking=True).float().unsqueeze(1) / 255.0
    if config.augment:
        x = random_resized_crop(x, img_size, config.crop_scale, generator)
    elif x.shape[-1] != img_size:
        x = F.interpolate(x, size=(img_size, img_size), mode="bilinear", align_corners=False, antialias=True)
    return (x - stats["mean"]) / stats["std"]


# ---------------------------------------------------------------- checkpoints
def save_checkpoint(model: MaskedAutoencoder, path: str | Path, extra: dict[str, Any] | None = None) -> Path:
    """Write weights + JSON metadata (mae_config, normalisation, extra) atomically as safetensors."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = dict(extra or {})
    normalisation = extra.pop("normalisation", None) or getattr(model, "normalisation", None)
    if normalisation is None:
        raise ValueError("the model has no normalisation stats; pass extra={'normalisation': {...}}")
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "mae_config": json.dumps(model.config.to_dict()),
        "normalisation": json.dumps(normalisation),
    }
    metadata.update({k: json.dumps(v) for k, v in extra.items()})
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def read_checkpoint_metadata(path: str | Path) -> dict[str, Any]:
    """Parsed JSON metadata of an MAE safetensors checkpoint (raises CheckpointError)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is not a safetensors checkpoint: {exc}") from exc
    if "mae_config" not in raw or "normalisation" not in raw:
        raise CheckpointError(f"{path} is a safetensors file but not a synthaudit MAE checkpoint")
    out: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def load_checkpoint(
    path: str | Path, device: str | torch.device = "cpu"
) -> tuple[MaskedAutoencoder, dict[str, Any]]:
    """Load an MAE checkpoint written by save_checkpoint (safetensors only, never pickle)."""
    metadata = read_checkpoint_metadata(path)
    dev = resolve_device(device) if isinstance(device, str) else device
    model = create_mae(MAEConfig.from_dict(metadata["mae_config"]))
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            state = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable tensors: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not match the stored mae_config: {exc}") from exc
    model.normalisation = dict(metadata["normalisation"])
    return model.to(dev).eval(), metadata
