"""The DCGAN the builders make_gan_bench.py and make_ct_bench.py train: networks, one step, sampling."""

from __future__ import annotations

from itertools import pairwise

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Z = 64  # latent dimension
BETAS = (0.5, 0.999)  # Adam betas of the DCGAN paper


class Generator(nn.Module):
    """Transposed-conv generator with batch norm: z [B, Z] -> images [B, 1, side, side] in [-1, 1]."""

    def __init__(self, width: int, side: int) -> None:
        super().__init__()
        ups = int(np.log2(side // 4))  # 4 -> side
        chans = [width * 2 ** (ups - 1 - i) for i in range(ups)]
        layers: list[nn.Module] = [
            nn.ConvTranspose2d(Z, chans[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(chans[0]),
            nn.ReLU(True),
        ]
        for a, b in pairwise(chans):
            layers += [nn.ConvTranspose2d(a, b, 4, 2, 1, bias=False), nn.BatchNorm2d(b), nn.ReLU(True)]
        layers += [nn.ConvTranspose2d(chans[-1], 1, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z[:, :, None, None])


class Discriminator(nn.Module):
    """Spectral-norm conv discriminator: images [B, 1, side, side] -> logits [B]."""

    def __init__(self, width: int, side: int) -> None:
        super().__init__()
        sn = nn.utils.spectral_norm
        downs = int(np.log2(side // 4))
        chans = [width * 2**i for i in range(downs)]
        layers: list[nn.Module] = [sn(nn.Conv2d(1, chans[0], 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        for a, b in pairwise(chans):
            layers += [sn(nn.Conv2d(a, b, 4, 2, 1)), nn.LeakyReLU(0.2, True)]
        layers += [sn(nn.Conv2d(chans[-1], 1, 4, 1, 0))]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten()


def optimisers(gen: Generator, disc: Discriminator, lr: float) -> tuple[torch.optim.Adam, torch.optim.Adam]:
    """Adam for the generator and the discriminator (betas 0.5, 0.999)."""
    adam = torch.optim.Adam
    return adam(gen.parameters(), lr, betas=BETAS), adam(disc.parameters(), lr, betas=BETAS)


def train_step(
    gen: Generator,
    disc: Discriminator,
    opt_g: torch.optim.Optimizer,
    opt_d: torch.optim.Optimizer,
    data: torch.Tensor,
    batch: int,
    rng: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """One non-saturating GAN step on a batch drawn from data (indices, then latents, from rng); the losses
    (D, G) as detached tensors, so that a caller reads them back only when it logs."""
    real = data[torch.randint(len(data), (batch,), generator=rng, device=data.device)]
    fake = gen(torch.randn(batch, Z, generator=rng, device=data.device))
    loss_d = F.softplus(-disc(real)).mean() + F.softplus(disc(fake.detach())).mean()
    opt_d.zero_grad(set_to_none=True)
    loss_d.backward()
    opt_d.step()
    loss_g = F.softplus(-disc(fake)).mean()
    opt_g.zero_grad(set_to_none=True)
    loss_g.backward()
    opt_g.step()
    return loss_d.detach(), loss_g.detach()


def generate(gen: Generator, n: int, seed: int, chunk: int) -> torch.Tensor:
    """n samples [n, 1, side, side] in [-1, 1] from seeded latents drawn `chunk` at a time, in eval mode (the
    generator's train/eval mode is restored after)."""
    was_training = gen.training
    gen.eval()
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        x = torch.cat([gen(torch.randn(chunk, Z, generator=g)) for _ in range(0, n, chunk)])[:n]
    gen.train(was_training)
    return x


def as_uint8(x: torch.Tensor) -> np.ndarray:
    """[-1, 1] images -> uint8 0..255."""
    return ((x + 1.0) * 127.5).round().clamp(0, 255).to(torch.uint8).numpy()
