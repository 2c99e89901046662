"""MAE pretraining: the loss falls, runs are reproducible, checkpoints round-trip through safetensors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from _fixtures_ml import blob_images
from safetensors.torch import save_file

from synthaudit.models.pretrain import (
    CheckpointError,
    PretrainConfig,
    _PlateauStopper,
    default_images_seen,
    load_checkpoint,
    pretrain_mae,
    save_checkpoint,
    to_model_input,
)


def _quick(images_seen: int, **kw) -> PretrainConfig:
    kw.setdefault("batch_size", 16)
    return PretrainConfig(device="cpu", images_seen=images_seen, early_stop=False, **kw)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return blob_images(96, size=32, seed=3)


@pytest.fixture(scope="module")
def trained(images: np.ndarray):
    """A tiny MAE trained for a handful of steps (shared by the checkpoint tests)."""
    return pretrain_mae(images, _quick(16 * 4, seed=5))


@pytest.mark.slow
def test_loss_decreases(images: np.ndarray) -> None:
    model, losses = pretrain_mae(images, _quick(8 * 20, lr=1e-3, augment=False, batch_size=8))
    assert len(losses) == 20
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])
    assert not model.training


@pytest.mark.slow
def test_same_seed_gives_identical_weights(images: np.ndarray) -> None:
    a, la = pretrain_mae(images, _quick(16 * 3, seed=7))
    b, lb = pretrain_mae(images, _quick(16 * 3, seed=7))
    c, _ = pretrain_mae(images, _quick(16 * 3, seed=8))
    assert la == lb
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)


@pytest.mark.slow
def test_progress_reaches_one_and_normalisation_is_from_the_data(images: np.ndarray) -> None:
    seen: list[float] = []
    model, _ = pretrain_mae(images, _quick(16 * 3), on_progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0) and len(seen) == 3
    x = images / 255.0
    assert model.normalisation["mean"] == pytest.approx(x.mean(), rel=1e-6)
    assert model.normalisation["std"] == pytest.approx(x.std(), rel=1e-6)


def test_plateau_stopper_counts_windows_without_improvement() -> None:
    stopper = _PlateauStopper(window=2, patience=2, min_rel=0.01)
    assert not any(stopper.update(v) for v in [4.0, 4.0, 2.0, 2.0])  # windows 4.0 then 2.0: improving
    assert not any(stopper.update(v) for v in [1.99, 1.99])  # < 1 % better: first bad window
    assert stopper.update(2.5) is False and stopper.update(2.5) is True  # second bad window: stop


@pytest.mark.slow
def test_early_stop_on_a_plateau() -> None:
    noise = np.random.default_rng(0).integers(0, 256, (16, 32, 32), dtype=np.uint8)  # unpredictable
    cfg = PretrainConfig(
        device="cpu", batch_size=4, images_seen=4 * 200, patience=1, plateau_window=5, lr=1e-3
    )
    _, losses = pretrain_mae(noise, cfg)
    assert 10 <= len(losses) < 60


@pytest.mark.slow
def test_checkpoint_round_trip_gives_identical_features(trained, images: np.ndarray, tmp_path: Path) -> None:
    model, losses = trained
    path = save_checkpoint(model, tmp_path / "ck" / "encoder.safetensors", extra={"final_loss": losses[-1]})
    assert path.is_file() and list(path.parent.iterdir()) == [path]  # no temp file left behind
    loaded, meta = load_checkpoint(path, "cpu")
    assert meta["final_loss"] == pytest.approx(losses[-1])
    assert meta["normalisation"] == model.normalisation
    assert meta["mae_config"] == model.config.to_dict()
    x = to_model_input(torch.from_numpy(images[:8]), 64, **model.normalisation)
    with torch.no_grad():
        assert torch.equal(model.forward_features(x), loaded.forward_features(x))


@pytest.mark.parametrize("kind", ["pickle", "garbage", "no_metadata"])
def test_load_refuses_other_files(kind: str, trained, tmp_path: Path) -> None:
    model, _ = trained
    path = tmp_path / "bad.safetensors"
    if kind == "pickle":
        torch.save(model.state_dict(), path)
    elif kind == "garbage":
        path.write_bytes(b"not a checkpoint at all" * 10)
    else:
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    with pytest.raises(CheckpointError):
        load_checkpoint(path, "cpu")


def test_load_refuses_mismatched_weights(trained, tmp_path: Path) -> None:
    model, _ = trained
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("decoder")}
    meta = {
        "mae_config": json.dumps(model.config.to_dict()),
        "normalisation": json.dumps({"mean": 0, "std": 1}),
    }
    save_file(state, str(tmp_path / "partial.safetensors"), metadata=meta)
    with pytest.raises(CheckpointError, match="do not match"):
        load_checkpoint(tmp_path / "partial.safetensors", "cpu")


def test_default_budget() -> None:
    assert default_images_seen(100, "cpu") == 20_000  # the floor for small sets
    assert default_images_seen(4_000, "cpu") == 40_000  # capped to keep a CPU audit within minutes
    assert default_images_seen(4_000, "cuda") >= 100 * 4_000
    cfg = PretrainConfig(epochs=3)
    from synthaudit.models.pretrain import budget_images

    assert budget_images(cfg, 50, "cpu") == 150
    assert budget_images(PretrainConfig(epochs=3, images_seen=10), 50, "cpu") == 10
