"""The `vit_tokens_whitened` encoder and the `density_attribution_vit` method, in-process on tiny sets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from synthetic_sets import make_membership_set

from synthaudit.models.config import AuditConfig
from synthaudit.models.encoders.vit_tokens import (
    VitTokensEncoder,
    fit_vit_tokens,
    load_vit_tokens,
    random_vit,
    save_vit_tokens,
)
from synthaudit.models.stages import AuditInputs, run_audit


@pytest.fixture()
def images() -> np.ndarray:
    return np.random.default_rng(3).integers(0, 256, (40, 32, 32), dtype=np.uint8)


@pytest.mark.slow
def test_the_fitted_state_round_trips_bit_for_bit(images: np.ndarray, tmp_path: Path) -> None:
    fitted = fit_vit_tokens(images, seed=5, device="cpu")
    before = VitTokensEncoder(fitted, device="cpu").embed(images)
    save_vit_tokens(fitted, tmp_path / "vit.safetensors")
    after = VitTokensEncoder(load_vit_tokens(tmp_path / "vit.safetensors"), device="cpu").embed(images)
    assert before.shape[0] == 40 and 0 < before.shape[1] <= 2048
    np.testing.assert_array_equal(before, after)
    np.testing.assert_allclose(np.linalg.norm(after, axis=1), 1.0, rtol=1e-5)


def test_the_vit_depends_on_the_seed_only(images: np.ndarray) -> None:
    a, b, c = random_vit(1).state_dict(), random_vit(1).state_dict(), random_vit(2).state_dict()
    assert all(np.array_equal(a[k].numpy(), b[k].numpy()) for k in a)
    assert not all(np.array_equal(a[k].numpy(), c[k].numpy()) for k in a)


@pytest.mark.slow
def test_the_method_finds_copies_and_repeats_itself(tmp_path: Path) -> None:
    labels = make_membership_set(
        tmp_path / "set", n_used=8, n_unused=8, n_fresh_generated=16, exact_copies=True
    )
    inputs = AuditInputs(tmp_path / "set" / "real", tmp_path / "set" / "generated")
    config = AuditConfig(method="density_attribution_vit", image_size=32)
    first = run_audit(inputs, config, tmp_path / "one")
    second = run_audit(inputs, config, tmp_path / "two")
    assert (tmp_path / "one" / "vit_tokens.safetensors").exists()
    assert [(r.id, r.used, r.score) for r in first.rows] == [(r.id, r.used, r.score) for r in second.rows]
    assert {r.id for r in first.rows if r.used} == {i for i, used in labels.items() if used}
