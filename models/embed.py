"""The shared batched embedding loop: uint8 images in, L2-normalised float32 features out."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from synthaudit.models.device import auto_batch_size, autocast_context, configure_cuda, resolve_device

ModelFn = Callable[[torch.Tensor], torch.Tensor]
GPU_MAX_BATCH = 4096
PROBE_ITEMS = 32


def l2_normalise(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation of a float array [N, D] (zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


def embed_images(
    model_fn: ModelFn,
    images: np.ndarray,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    on_progress: Callable[[float], None] | None = None,
) -> np.ndarray:
    """Run model_fn over uint8 images [N, S, S] in batches; returns float32 [N, D], L2-normalised.

    model_fn receives a uint8 tensor [B, S, S] already on device and returns features [B, D];
    it runs under inference_mode (and bf16 autocast on CUDA). An empty input gives shape [0, 0].
    On CUDA the batch grows to what free memory allows (measured on a probe batch), uploads go
    through pinned memory without blocking, and features stay on the GPU until the end.
    """
    images = np.asarray(images)
    if images.ndim != 3:
        raise ValueError(f"expected images [N, S, S], got shape {images.shape}")
    if batch_size < 1:
        raise ValueError("batch_size must be >= 1")
    dev = resolve_device(device) if not isinstance(device, torch.device) else device
    n = len(images)
    if n == 0:
        return np.zeros((0, 0), dtype=np.float32)
    configure_cuda(dev)
    chunks: list[torch.Tensor] = []
    with torch.inference_mode(), autocast_context(dev):
        if dev.type == "cuda":
            batch_size = max(batch_size, _cuda_batch(model_fn, images, dev))
        for start in range(0, n, batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size]))
            if dev.type == "cuda":
                batch = batch.pin_memory().to(dev, non_blocking=True)
            feats = model_fn(batch).float().flatten(1)  # [B, D]
            chunks.append(F.normalize(feats, dim=1))
            if on_progress is not None:
                on_progress(min(n, start + batch_size) / n)
    return torch.cat(chunks).cpu().numpy().astype(np.float32, copy=False)


def _cuda_batch(model_fn: ModelFn, images: np.ndarray, dev: torch.device) -> int:
    """The largest batch free GPU memory allows, from the peak memory of a probe batch of real images."""
    probe = torch.from_numpy(np.ascontiguousarray(images[:PROBE_ITEMS])).to(dev)
    items = len(probe)
    return auto_batch_size(
        dev, 1, lambda b: model_fn(probe[:b]), cap=GPU_MAX_BATCH, fraction=0.5, probe_items=items
    )
