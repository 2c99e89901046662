"""Device selection, mixed-precision context and seeding shared by the ML code."""

from __future__ import annotations

import contextlib
import random
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import numpy as np
import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn "auto" / "cpu" / "cuda[:n]" into a torch.device, refusing CUDA when it is absent."""
    if isinstance(device, torch.device):
        device = str(device)
    name = (device or "auto").strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; use 'cpu' or 'auto'")
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise ValueError(f"unknown device {device!r}: expected 'auto', 'cpu' or 'cuda[:index]'")


def autocast_context(device: torch.device | str) -> AbstractContextManager[Any]:
    """bf16 autocast on CUDA, a no-op context elsewhere."""
    dev = torch.device(device) if not isinstance(device, torch.device) else device
    if dev.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) RNGs."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def configure_cuda(device: torch.device) -> None:
    """Fast defaults on CUDA: TF32 for the fp32 matmuls left outside autocast, cuDNN autotuning."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.benchmark = True


def batch_from_memory(
    free_bytes: int, per_item_bytes: int, *, floor: int = 1, cap: int = 4096, fraction: float = 0.5
) -> int:
    """The largest power-of-two batch whose working memory fits in fraction * free_bytes, in [floor, cap]."""
    fits = int(fraction * max(0, free_bytes) // max(1, per_item_bytes))
    batch = 1 << max(0, fits.bit_length() - 1) if fits >= 1 else 1
    return int(max(floor, min(cap, batch)))


def cuda_bytes_per_item(step: Callable[[int], Any], device: torch.device, items: int = 16) -> int:
    """Peak CUDA memory one call of step(items) allocates, per item (measured, not guessed)."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    before = torch.cuda.memory_allocated(device)
    step(items)
    torch.cuda.synchronize(device)
    peak = torch.cuda.max_memory_allocated(device)
    return max(1, (peak - before) // items)


def auto_batch_size(
    device: torch.device,
    default: int,
    step: Callable[[int], Any] | None = None,
    *,
    cap: int = 4096,
    fraction: float = 0.5,
    probe_items: int = 16,
) -> int:
    """Batch size: `default` on CPU; on CUDA the largest that fits in free memory (torch.cuda.mem_get_info).

    step(b) runs one batch of b items (forward, or forward + backward); its peak memory per item,
    measured on probe_items, sets the batch (a power of two, at most cap).
    """
    if device.type != "cuda" or step is None:
        return default
    per_item = cuda_bytes_per_item(step, device, probe_items)
    free, _total = torch.cuda.mem_get_info(device)
    return batch_from_memory(free, per_item, floor=1, cap=cap, fraction=fraction)


def maybe_compile(module: torch.nn.Module, enabled: bool) -> None:
    """torch.compile a module's transformer blocks in place (keeps state_dict keys); off by default."""
    if not enabled:
        return
    for name in ("blocks", "decoder_blocks"):
        for block in getattr(module, name, []):
            block.compile()
