"""models.device and the GPU path's CPU behaviour: batch sizes, fused attention, compile flag off by default."""

from __future__ import annotations

from synthaudit.models.config import AuditConfig
from synthaudit.models.device import auto_batch_size, batch_from_memory, resolve_device
from synthaudit.models.mae import create_mae
from synthaudit.models.pretrain import CPU_BATCH, PretrainConfig, train_batch_size


def test_batch_from_memory_is_the_largest_fitting_power_of_two() -> None:
    gib = 2**30
    assert batch_from_memory(80 * gib, 40 * 2**20, cap=4096) == 1024  # half of 80 GiB / 40 MiB = 1024
    assert batch_from_memory(80 * gib, 30 * 2**20, cap=4096) == 1024  # 1365 fits -> 1024
    assert batch_from_memory(80 * gib, 1, cap=512) == 512
    assert batch_from_memory(10 * 2**20, 40 * 2**20) == 1  # nothing fits: one at a time
    assert batch_from_memory(10 * 2**20, 40 * 2**20, floor=8) == 8


def test_cpu_batch_sizes_are_fixed_defaults() -> None:
    cpu = resolve_device("cpu")
    assert auto_batch_size(cpu, 64, step=lambda b: None) == 64
    model = create_mae("mae_tiny_patch8_64")
    assert train_batch_size(model, PretrainConfig(device="cpu"), cpu) == CPU_BATCH == 128
    assert train_batch_size(model, PretrainConfig(device="cpu", batch_size=16), cpu) == 16
    assert PretrainConfig().learning_rate() == PretrainConfig(batch_size=128).learning_rate()


def test_mae_blocks_use_fused_attention_and_compile_is_off_by_default() -> None:
    model = create_mae("mae_tiny_patch8_64")
    assert all(block.attn.fused_attn for block in [*model.blocks, *model.decoder_blocks])
    assert AuditConfig().compile is False and PretrainConfig().compile is False
