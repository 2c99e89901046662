"""The masked autoencoder: shapes, patchify round trip, masking, loss, presets."""

from __future__ import annotations

import pytest
import torch

from synthaudit.models.mae import MAE_PRESETS, MAEConfig, MaskedAutoencoder, create_mae, sincos_pos_embed_2d

SMALL = MAEConfig(
    img_size=32,
    patch_size=8,
    embed_dim=32,
    depth=1,
    num_heads=2,
    decoder_embed_dim=32,
    decoder_depth=1,
    decoder_num_heads=2,
)


@pytest.fixture(scope="module")
def model() -> MaskedAutoencoder:
    torch.manual_seed(0)
    return create_mae(SMALL).eval()


def test_forward_shapes(model: MaskedAutoencoder) -> None:
    x = torch.randn(3, 1, 32, 32)
    loss, pred, mask = model(x, mask_ratio=0.75)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert pred.shape == (3, 16, 64)  # L = (32/8)^2, p*p*C = 64
    assert mask.shape == (3, 16)
    assert model.forward_features(x).shape == (3, 17, 32)
    assert model.patch_features(x).shape == (3, 16, 32)
    assert model.global_features(x).shape == (3, 32)


def test_tiny_preset_shapes() -> None:
    m = create_mae("mae_tiny_patch8_64").eval()
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert m.forward_features(x).shape == (2, 65, m.config.embed_dim)
        _, pred, mask = m(x)
    assert pred.shape == (2, 64, 64) and mask.shape == (2, 64)


def test_patchify_round_trip_and_layout(model: MaskedAutoencoder) -> None:
    x = torch.randn(2, 1, 32, 32)
    patches = model.patchify(x)
    assert patches.shape == (2, 16, 64)
    assert torch.equal(model.unpatchify(patches), x)
    # patch 1 is the second patch of the first row: rows 0..7, columns 8..15
    assert torch.equal(patches[0, 1].reshape(8, 8), x[0, 0, 0:8, 8:16])
    assert torch.equal(patches[1, 4].reshape(8, 8), x[1, 0, 8:16, 0:8])


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.0])
def test_random_masking_ratio_and_kept_tokens(ratio: float) -> None:
    x = torch.randn(4, 16, 5)
    kept, mask, ids_restore = MaskedAutoencoder.random_masking(x, ratio)
    n_keep = int(round(16 * (1 - ratio)))
    assert kept.shape == (4, n_keep, 5)
    assert torch.equal(mask.sum(dim=1), torch.full((4,), 16.0 - n_keep))
    for b in range(4):  # the kept tokens are exactly the unmasked ones
        visible = x[b][mask[b] == 0]
        assert torch.equal(torch.sort(visible[:, 0]).values, torch.sort(kept[b, :, 0]).values)
    assert torch.equal(torch.sort(ids_restore, dim=1).values, torch.arange(16).expand(4, -1))


def test_masking_follows_the_generator() -> None:
    x = torch.randn(2, 64, 3)
    masks = [
        MaskedAutoencoder.random_masking(x, 0.75, torch.Generator().manual_seed(s))[1] for s in (1, 1, 2)
    ]
    assert torch.equal(masks[0], masks[1])
    assert not torch.equal(masks[0], masks[2])


def test_loss_is_zero_for_a_perfect_prediction(model: MaskedAutoencoder) -> None:
    x = torch.randn(2, 1, 32, 32)
    target = model.patchify(x)
    target = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6) ** 0.5
    mask = torch.ones(2, 16)
    assert model.forward_loss(x, target, mask).item() == pytest.approx(0.0, abs=1e-6)
    assert model.forward_loss(x, target + 1.0, mask).item() == pytest.approx(1.0, abs=1e-5)
    # only masked patches count
    wrong_on_visible = target.clone()
    wrong_on_visible[:, :8] += 5.0
    half = torch.cat([torch.zeros(2, 8), torch.ones(2, 8)], dim=1)
    assert model.forward_loss(x, wrong_on_visible, half).item() == pytest.approx(0.0, abs=1e-6)


def test_features_do_not_depend_on_the_rng(model: MaskedAutoencoder) -> None:
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        a = model.forward_features(x)
        torch.manual_seed(123)
        b = model.forward_features(x)
    assert torch.equal(a, b)


def test_sincos_position_embedding() -> None:
    emb = sincos_pos_embed_2d(16, 4)
    assert emb.shape == (1, 17, 16)
    assert torch.all(emb[0, 0] == 0)  # cls position
    assert len({tuple(r.tolist()) for r in emb[0, 1:]}) == 16  # every patch position distinct
    assert emb.abs().max() <= 1.0


def test_config_round_trip_and_presets() -> None:
    for name, cfg in MAE_PRESETS.items():
        assert MAEConfig.from_dict(cfg.to_dict()) == cfg, name
        assert cfg.in_chans == 1
    assert {"mae_tiny_patch8_64", "mae_small_patch16_224", "mae_base_patch16_224"} <= set(MAE_PRESETS)
    base = MAE_PRESETS["mae_base_patch16_224"]
    assert (base.embed_dim, base.depth, base.num_heads, base.patch_size) == (768, 12, 12, 16)
    with pytest.raises(ValueError, match="unknown MAE preset"):
        create_mae("mae_huge_nope")
    with pytest.raises(ValueError, match="multiple"):
        MAEConfig(img_size=30, patch_size=8)
