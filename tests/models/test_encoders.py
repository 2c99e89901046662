"""Encoder registry: pixels, the MAE checkpoint encoder and timm backbones with local weights."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from _fixtures_ml import blob_images
from safetensors.torch import save_file

from synthaudit.models.device import resolve_device
from synthaudit.models.encoders.registry import (
    EncoderError,
    EncoderWeightsError,
    available_encoders,
    create_encoder,
    register_encoder,
)
from synthaudit.models.pretrain import PretrainConfig, pretrain_mae, save_checkpoint

BACKBONES = [
    "vgg16",
    "inception_v3",
    "resnet50",
    "resnet101",
    "mobilenetv2_100",
    "mobilenetv3_large_100",
    "efficientnet_b0",
]


def _assert_unit_rows(x: np.ndarray) -> None:
    assert x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)


def test_registry_lists_every_encoder() -> None:
    assert {"pixels", "mae", *BACKBONES} <= set(available_encoders())
    with pytest.raises(EncoderError, match="already registered"):
        register_encoder("pixels")(lambda **kw: None)


def test_unknown_encoder_is_a_clear_error() -> None:
    with pytest.raises(EncoderError, match="unknown encoder 'clipp'.*pixels"):
        create_encoder("clipp")


def test_pixels_is_normalised_and_matches_identical_images() -> None:
    images = blob_images(6, size=64, seed=1)
    images[3] = images[0]
    enc = create_encoder("pixels", device="cpu", image_size=64)
    feats = enc.embed(images)
    assert feats.shape == (6, 32 * 32)
    _assert_unit_rows(feats)
    assert feats[0] @ feats[3] == pytest.approx(1.0, abs=1e-6)
    assert feats[0] @ feats[1] < 0.99


def test_pixels_ignores_brightness_offsets_and_keeps_small_images() -> None:
    images = blob_images(2, size=16, seed=2) // 2
    brighter = images + np.uint8(40)
    enc = create_encoder("pixels", device="cpu", image_size=16)
    a, b = enc.embed(images), enc.embed(brighter)
    assert a.shape == (2, 16 * 16)  # S <= 32: kept at full resolution
    np.testing.assert_allclose((a * b).sum(axis=1), 1.0, atol=1e-5)


def test_embed_reports_progress_and_handles_uneven_batches() -> None:
    seen: list[float] = []
    feats = create_encoder("pixels", device="cpu").embed(blob_images(300, 32), on_progress=seen.append)
    assert feats.shape == (300, 1024) and seen[-1] == 1.0 and seen == sorted(seen)


@pytest.mark.parametrize("name", ["resnet50", "mobilenetv2_100", "vgg16"])
def test_backbone_without_weights_is_refused(name: str) -> None:
    with pytest.raises(EncoderWeightsError, match=f"{name} needs ImageNet weights from a local file"):
        create_encoder(name, device="cpu")


@pytest.mark.slow
@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_backbone_loads_a_local_weights_file(suffix: str, tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = timm.create_model("mobilenetv2_100", pretrained=False)  # with its 1000-class head
    state = {k: v.contiguous() for k, v in source.state_dict().items()}
    path = tmp_path / f"mnv2{suffix}"
    if suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    enc = create_encoder("mobilenetv2_100", weights=path, device="cpu")
    assert torch.equal(enc.model.state_dict()["conv_stem.weight"], state["conv_stem.weight"])
    assert enc.matched_fraction == pytest.approx(1.0)
    images = blob_images(3, size=32, seed=4)
    feats = enc.embed(images, batch_size=2)
    assert feats.shape == (3, 1280)
    _assert_unit_rows(feats)


def test_backbone_refuses_weights_of_another_architecture(tmp_path: Path) -> None:
    other = timm.create_model("resnet18", pretrained=False, num_classes=0)
    path = tmp_path / "resnet18.safetensors"
    save_file({k: v.contiguous() for k, v in other.state_dict().items()}, str(path))
    with pytest.raises(EncoderWeightsError, match="does not fit mobilenetv2_100: only"):
        create_encoder("mobilenetv2_100", weights=path, device="cpu")
    (tmp_path / "w.npy").write_bytes(b"x")
    with pytest.raises(EncoderWeightsError, match="unsupported weights format"):
        create_encoder("mobilenetv2_100", weights=tmp_path / "w.npy", device="cpu")
    with pytest.raises(EncoderWeightsError, match="not found"):
        create_encoder("mobilenetv2_100", weights=tmp_path / "missing.pth", device="cpu")


def test_mae_needs_a_checkpoint() -> None:
    with pytest.raises(
        EncoderWeightsError, match="mae needs a checkpoint: pretrain first or pass --checkpoint"
    ):
        create_encoder("mae", device="cpu")


@pytest.mark.slow
def test_mae_encoder_embeds_with_its_checkpoint(tmp_path: Path) -> None:
    images = blob_images(40, size=32, seed=6)
    cfg = PretrainConfig(device="cpu", batch_size=16, images_seen=32, early_stop=False)
    model, _ = pretrain_mae(images, cfg)
    path = save_checkpoint(model, tmp_path / "encoder.safetensors")
    enc = create_encoder("mae", checkpoint=path, device="cpu")
    feats = enc.embed(images[:5], batch_size=2)
    assert feats.shape == (5, model.config.embed_dim)
    _assert_unit_rows(feats)
    again = enc.embed(np.concatenate([images[:5], images[:5]]), batch_size=4)
    np.testing.assert_allclose(again[5:], feats, atol=1e-5)  # batching does not change features
    assert float(feats[0] @ feats[1]) < 0.9999


def test_device_resolution() -> None:
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            resolve_device("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device("tpu")


def test_backbone_maps_renamed_keys_by_order(tmp_path: Path) -> None:
    """A file with foreign key names (like torchvision's) but timm's tensor order still loads."""
    torch.manual_seed(1)
    source = timm.create_model("mobilenetv2_100", pretrained=False)
    renamed = {  # keep only the last name part, as torchvision's 'features.3.conv.1.weight' would
        f"features.{i}.{k.rsplit('.', 1)[-1]}": v.contiguous()
        for i, (k, v) in enumerate(source.state_dict().items())
    }
    path = tmp_path / "renamed.pth"
    torch.save(renamed, path)
    enc = create_encoder("mobilenetv2_100", weights=path, device="cpu")
    assert enc.matched_fraction == pytest.approx(1.0)
    assert torch.equal(enc.model.state_dict()["bn2.running_var"], source.state_dict()["bn2.running_var"])
