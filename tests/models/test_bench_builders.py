"""The benchmark builders: the copy-transform stress suite, the MRI slice benchmark and the DCGAN it shares
with the GAN benchmark (no download, no real training: their pieces on small synthetic images and volumes)."""

from __future__ import annotations

import gzip
import importlib.util
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "benchmarks"


def _load(name: str):
    if str(BENCHMARKS) not in sys.path:  # the scripts import their sibling modules (dcgan.py)
        sys.path.insert(0, str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


stress = _load("make_stress_bench")
ct = _load("make_ct_bench")
gan = _load("make_gan_bench")
dcgan = _load("dcgan")


def _blob(side: int = 32, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:side, :side] / side
    img = np.exp(-((xx - 0.4) ** 2 + (yy - 0.55) ** 2) / 0.02) + 0.3 * rng.random((side, side))
    return (img / img.max()).astype(np.float32)


def test_geometric_identity_and_translation() -> None:
    rng = np.random.default_rng(0)
    img = _blob()
    assert np.allclose(stress.geometric(img, rng), img, atol=1e-5)
    point = np.zeros((40, 40), np.float32)
    point[20, 20] = 1.0
    moved = stress.geometric(point, np.random.default_rng(3), shift=0.1)  # 4 px
    y, x = np.unravel_index(np.argmax(moved), moved.shape)
    assert abs(np.hypot(y - 20, x - 20) - 4.0) < 1.0


def test_every_transform_keeps_shape_and_range() -> None:
    img, other = _blob(seed=1), _blob(seed=2)
    for name in stress.TRANSFORMS:
        for level in range(3):
            out = stress.to_uint8(stress.transform(name, level, img, other, np.random.default_rng(level)))
            assert out.shape == img.shape and out.dtype == np.uint8, name
    high = stress.transform("rotate", 2, img, other, np.random.default_rng(0))
    assert not np.allclose(high, img, atol=1e-3)


def test_build_writes_one_copy_per_used_image(tmp_path: Path) -> None:
    real_dir, novel_dir = tmp_path / "real", tmp_path / "novel"
    real_dir.mkdir()
    novel_dir.mkdir()
    for i in range(10):
        Image.fromarray(stress.to_uint8(_blob(seed=i))).save(real_dir / f"r{i:02d}.png")
    for i in range(8):
        Image.fromarray(stress.to_uint8(_blob(seed=100 + i))).save(novel_dir / f"g{i:02d}.png")
    written = stress.build(
        real_dir, novel_dir, tmp_path / "suite", 0, ["identity-none", "noise-high"], log=lambda _: None
    )
    assert written == ["identity-none", "noise-high"]
    folder = tmp_path / "suite" / "identity-none"
    labels = dict(line.split(",") for line in (folder / "labels.csv").read_text().split()[1:])
    used = sorted(k for k, v in labels.items() if v == "1")
    assert len(labels) == 10 and len(used) == 5
    generated = [np.asarray(Image.open(p)) for p in sorted((folder / "generated").glob("*.png"))]
    assert len(generated) == 10  # 5 copies + 5 novel images
    for image_id in labels:  # exact copies of the used images, of no other
        real = np.asarray(Image.open(folder / "real" / f"{image_id}.png"))
        copies = sum(np.array_equal(real, g) for g in generated)
        assert copies == (1 if image_id in used else 0)


def _write_nifti(path: Path, vol: np.ndarray, pixdim: tuple[float, float, float]) -> None:
    header = bytearray(352)
    struct.pack_into("<i", header, 0, 348)
    struct.pack_into("<8h", header, 40, 3, *vol.shape, 1, 1, 1, 1)
    struct.pack_into("<h", header, 70, 16)  # float32
    struct.pack_into("<h", header, 72, 32)
    struct.pack_into("<8f", header, 76, 1.0, *pixdim, 1, 1, 1, 1)
    struct.pack_into("<f", header, 108, 352.0)
    struct.pack_into("<2f", header, 112, 1.0, 0.0)
    header[344:348] = b"n+1\0"
    path.write_bytes(gzip.compress(bytes(header) + vol.astype("<f4").T.tobytes()))


def test_nifti_reader_and_slices(tmp_path: Path) -> None:
    zz, yy, xx = np.mgrid[:20, :24, :16]
    vol = ((xx - 8) ** 2 + (yy - 12) ** 2 + (zz - 10) ** 2 < 49).astype(np.float32) * (1 + xx)
    path = tmp_path / "v.nii.gz"
    _write_nifti(path, vol, (1.0, 1.0, 0.5))
    back, pixdim = ct.read_nifti(path)
    assert back.shape == vol.shape and np.array_equal(back, vol) and pixdim == (1.0, 1.0, 0.5)
    vol8 = ct.to_uint8(back)
    slices, index = ct.series_slices(vol8, pixdim, 2, 32)  # 0.5 mm axis: every second slice
    assert all(s.shape == (32, 32) for s in slices) and all(i % 2 == 0 for i in index) and len(slices) >= 3


def test_slab_assignment_is_balanced_and_contiguous() -> None:
    info = [
        {"volume": v, "axis": a, "slice": i, "series_pos": i}
        for v in ("a", "b", "c")
        for a in "xy"
        for i in range(40)
    ]
    slab = ct.assign_slabs(info, 8, ["a", "b"], seed=0)
    assert set(slab[[j for j, r in enumerate(info) if r["volume"] == "c"]]) == {-1}
    for v in ("a", "b"):
        for a in "xy":
            members = slab[[j for j, r in enumerate(info) if r["volume"] == v and r["axis"] == a]]
            assert set(members) == {0, 1} and abs(members.mean() - 0.5) <= 0.2
            assert all(len(set(members[k : k + 8])) == 1 for k in range(0, 40, 8))  # whole slabs
    assert np.array_equal(slab, ct.assign_slabs(info, 8, ["a", "b"], seed=0))


@pytest.mark.parametrize("side", [32, 64, 128])
def test_dcgan_shapes(side: int) -> None:
    gen, disc = dcgan.Generator(8, side), dcgan.Discriminator(8, side)
    x = gen(torch.randn(2, dcgan.Z))
    assert x.shape == (2, 1, side, side)
    assert disc(x).shape == (2,)


def _train(steps: int, seed: int) -> list[torch.Tensor]:
    torch.manual_seed(seed)
    gen, disc = dcgan.Generator(4, 32), dcgan.Discriminator(4, 32)
    opt_g, opt_d = dcgan.optimisers(gen, disc, 2e-4)
    data = torch.rand(6, 1, 32, 32) * 2 - 1
    rng = torch.Generator().manual_seed(seed + 1)
    for _ in range(steps):
        loss_d, loss_g = dcgan.train_step(gen, disc, opt_g, opt_d, data, 4, rng)
        assert torch.isfinite(loss_d) and torch.isfinite(loss_g)
    return [p.detach().clone() for p in gen.parameters()]


@pytest.mark.slow
def test_dcgan_training_is_seeded() -> None:
    first, again = _train(3, 0), _train(3, 0)
    assert all(torch.equal(a, b) for a, b in zip(first, again))
    assert not all(torch.equal(a, b) for a, b in zip(first, _train(3, 1)))


def test_both_builders_sample_the_shared_dcgan(tmp_path: Path) -> None:
    torch.manual_seed(0)
    gen = dcgan.Generator(4, 32)
    images = gan.sample(gen, 7, seed=2)  # the GAN benchmark crops its 32-px output back to 28
    assert images.shape == (7, 28, 28) and images.dtype == np.uint8
    assert gen.training  # sampling leaves the training mode as it was
    assert np.array_equal(images, gan.sample(gen, 7, seed=2))
    torch.save(gen.state_dict(), tmp_path / "gen.pt")  # the MRI benchmark samples from a saved snapshot
    slices = ct.sample(tmp_path / "gen.pt", {"width": 4, "side": 32}, 7, seed=2)
    assert slices.shape == (7, 32, 32) and slices.dtype == np.uint8
