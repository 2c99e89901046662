"""Masked autoencoder (He et al., 2022) for single-channel images, written against current timm.

Follows facebookresearch/mae ``models_mae.py``: a ViT encoder sees only the visible patches, a light
decoder reconstructs the masked ones, and the loss is the mean squared error on masked patches.
Shapes: B = batch, C = in_chans, S = img_size, p = patch_size, L = (S/p)^2 patches, D = embed_dim,
Dd = decoder_embed_dim.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch
import torch.nn as nn
from timm.layers import PatchEmbed
from timm.models.vision_transformer import Block


@dataclass(frozen=True)
class MAEConfig:
    """Architecture of a masked autoencoder."""

    img_size: int = 64
    patch_size: int = 8
    in_chans: int = 1
    embed_dim: int = 192
    depth: int = 4
    num_heads: int = 3
    decoder_embed_dim: int = 128
    decoder_depth: int = 2
    decoder_num_heads: int = 4
    mlp_ratio: float = 4.0
    norm_pix_loss: bool = True

    def __post_init__(self) -> None:
        if self.img_size % self.patch_size:
            raise ValueError(f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}")
        if self.embed_dim % self.num_heads or self.decoder_embed_dim % self.decoder_num_heads:
            raise ValueError("embedding dims must be divisible by their head counts")

    @property
    def num_patches(self) -> int:
        """Number of patches L per image."""
        return (self.img_size // self.patch_size) ** 2

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form (JSON-serialisable)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | str) -> MAEConfig:
        """Build from a dict (or its JSON string), ignoring unknown keys."""
        values: dict[str, Any] = json.loads(data) if isinstance(data, str) else data
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})


MAE_PRESETS: dict[str, MAEConfig] = {
    # CPU default: 64 patches of 8x8, small enough to pretrain on 2 cores in a couple of minutes.
    "mae_tiny_patch8_64": MAEConfig(
        img_size=64,
        patch_size=8,
        embed_dim=192,
        depth=4,
        num_heads=3,
        decoder_embed_dim=128,
        decoder_depth=2,
        decoder_num_heads=4,
    ),
    "mae_small_patch16_224": MAEConfig(
        img_size=224,
        patch_size=16,
        embed_dim=384,
        depth=12,
        num_heads=6,
        decoder_embed_dim=256,
        decoder_depth=4,
        decoder_num_heads=8,
    ),
    # ViT-B/16 encoder with the paper's 512-d, 8-block decoder (GPU).
    "mae_base_patch16_224": MAEConfig(
        img_size=224,
        patch_size=16,
        embed_dim=768,
        depth=12,
        num_heads=12,
        decoder_embed_dim=512,
        decoder_depth=8,
        decoder_num_heads=16,
    ),
}


def sincos_pos_embed_2d(embed_dim: int, grid_size: int, cls_token: bool = True) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embedding [1 (+1 cls), grid*grid, embed_dim]."""
    if embed_dim % 4:
        raise ValueError("embed_dim must be divisible by 4 for 2-D sin-cos embeddings")
    coords = torch.arange(grid_size, dtype=torch.float64)
    grid_h, grid_w = torch.meshgrid(coords, coords, indexing="xy")  # w varies fastest, as in MAE
    omega = 1.0 / 10000 ** (torch.arange(embed_dim // 4, dtype=torch.float64) / (embed_dim / 4))

    def one_axis(pos: torch.Tensor) -> torch.Tensor:
        out = pos.reshape(-1, 1) * omega.reshape(1, -1)  # [G*G, D/4]
        return torch.cat([out.sin(), out.cos()], dim=1)  # [G*G, D/2]

    emb = torch.cat([one_axis(grid_h), one_axis(grid_w)], dim=1)  # [G*G, D]
    if cls_token:
        emb = torch.cat([torch.zeros(1, embed_dim, dtype=torch.float64), emb], dim=0)
    return emb.float().unsqueeze(0)


class MaskedAutoencoder(nn.Module):
    """ViT masked autoencoder: encoder on visible patches, lightweight decoder, pixel MSE loss."""

    pos_embed: torch.Tensor  # buffers (register_buffer): declared for the type checker
    decoder_pos_embed: torch.Tensor
    # set by models.pretrain (pretrain_mae, load_checkpoint), not by __init__
    normalisation: dict[str, float]  # pixel mean and std of the training set
    images_seen: int
    train_batch_size: int

    def __init__(self, config: MAEConfig):
        super().__init__()
        self.config = config
        c = config
        num_patches = c.num_patches
        # --- encoder ---
        self.patch_embed = PatchEmbed(c.img_size, c.patch_size, c.in_chans, c.embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.register_buffer("pos_embed", torch.zeros(1, num_patches + 1, c.embed_dim), persistent=False)
        self.blocks = nn.ModuleList(
            [Block(c.embed_dim, c.num_heads, c.mlp_ratio, qkv_bias=True) for _ in range(c.depth)]
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=1e-6)
        # --- decoder ---
        self.decoder_embed = nn.Linear(c.embed_dim, c.decoder_embed_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, c.decoder_embed_dim))
        self.register_buffer(
            "decoder_pos_embed", torch.zeros(1, num_patches + 1, c.decoder_embed_dim), persistent=False
        )
        self.decoder_blocks = nn.ModuleList(
            [
                Block(c.decoder_embed_dim, c.decoder_num_heads, c.mlp_ratio, qkv_bias=True)
                for _ in range(c.decoder_depth)
            ]
        )
        self.decoder_norm = nn.LayerNorm(c.decoder_embed_dim, eps=1e-6)
        self.decoder_pred = nn.Linear(c.decoder_embed_dim, c.patch_size**2 * c.in_chans)
        self.initialize_weights()

    # ------------------------------------------------------------------ init
    def initialize_weights(self) -> None:
        """Sin-cos position embeddings, xavier linears, small normal tokens (as in MAE)."""
        grid = self.config.img_size // self.config.patch_size
        self.pos_embed.copy_(sincos_pos_embed_2d(self.config.embed_dim, grid))
        self.decoder_pos_embed.copy_(sincos_pos_embed_2d(self.config.decoder_embed_dim, grid))
        w = self.patch_embed.proj.weight.data
        nn.init.xavier_uniform_(w.view(w.shape[0], -1))
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        self.apply(self._init_module)

    @staticmethod
    def _init_module(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

    # ------------------------------------------------------------ patches
    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """[B, C, S, S] -> [B, L, p*p*C]."""
        p, c = self.config.patch_size, self.config.in_chans
        b, _, s, _ = imgs.shape
        g = s // p
        x = imgs.reshape(b, c, g, p, g, p)
        x = torch.einsum("bchpwq->bhwpqc", x)
        return x.reshape(b, g * g, p * p * c)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """[B, L, p*p*C] -> [B, C, S, S]."""
        p, c = self.config.patch_size, self.config.in_chans
        b, n, _ = x.shape
        g = int(round(n**0.5))
        if g * g != n:
            raise ValueError(f"{n} patches do not form a square grid")
        x = x.reshape(b, g, g, p, p, c)
        x = torch.einsum("bhwpqc->bchpwq", x)
        return x.reshape(b, c, g * p, g * p)

    @staticmethod
    def random_masking(
        x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Keep a random (1 - mask_ratio) share of tokens per sample by argsorting uniform noise.

        x: [B, L, D] -> (x_kept [B, L_keep, D], mask [B, L] with 1 = masked, ids_restore [B, L]).
        """
        b, n, d = x.shape
        len_keep = max(1, int(round(n * (1 - mask_ratio))))
        gen_device = generator.device if generator is not None else x.device
        noise = torch.rand(b, n, generator=generator, device=gen_device).to(x.device)  # [B, L]
        ids_shuffle = torch.argsort(noise, dim=1)  # ascending: small noise is kept
        ids_restore = torch.argsort(ids_shuffle, dim=1)
        ids_keep = ids_shuffle[:, :len_keep]
        x_kept = torch.gather(x, 1, ids_keep.unsqueeze(-1).expand(-1, -1, d))  # [B, L_keep, D]
        mask = torch.ones(b, n, device=x.device)
        mask[:, :len_keep] = 0
        mask = torch.gather(mask, 1, ids_restore)  # back to the original patch order
        return x_kept, mask, ids_restore

    # ------------------------------------------------------------ encoder / decoder
    def _embed_patches(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, S, S] -> patch tokens with position embeddings [B, L, D]."""
        return self.patch_embed(x) + self.pos_embed[:, 1:, :]

    def _prepend_cls(self, x: torch.Tensor) -> torch.Tensor:
        cls = (self.cls_token + self.pos_embed[:, :1, :]).expand(x.shape[0], -1, -1)  # [B, 1, D]
        return torch.cat([cls, x], dim=1)

    def forward_encoder(
        self, x: torch.Tensor, mask_ratio: float, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """[B, C, S, S] -> (latent [B, 1+L_keep, D], mask [B, L], ids_restore [B, L])."""
        x = self._embed_patches(x)
        x, mask, ids_restore = self.random_masking(x, mask_ratio, generator)
        x = self._prepend_cls(x)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, ids_restore

    def forward_decoder(self, latent: torch.Tensor, ids_restore: torch.Tensor) -> torch.Tensor:
        """latent [B, 1+L_keep, D] -> predicted pixels per patch [B, L, p*p*C]."""
        x = self.decoder_embed(latent)  # [B, 1+L_keep, Dd]
        b, n_vis, dd = x.shape
        n = ids_restore.shape[1]
        mask_tokens = self.mask_token.expand(b, n + 1 - n_vis, -1)  # [B, L-L_keep, Dd]
        x_ = torch.cat([x[:, 1:, :], mask_tokens], dim=1)  # [B, L, Dd], shuffled order
        x_ = torch.gather(x_, 1, ids_restore.unsqueeze(-1).expand(-1, -1, dd))  # unshuffle
        x = torch.cat([x[:, :1, :], x_], dim=1) + self.decoder_pos_embed  # [B, 1+L, Dd]
        for blk in self.decoder_blocks:
            x = blk(x)
        x = self.decoder_pred(self.decoder_norm(x))  # [B, 1+L, p*p*C]
        return x[:, 1:, :]

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean squared error on masked patches (targets normalised per patch if norm_pix_loss)."""
        target = self.patchify(imgs)  # [B, L, p*p*C]
        if self.config.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        loss = ((pred.float() - target.float()) ** 2).mean(dim=-1)  # [B, L]
        return (loss * mask).sum() / mask.sum().clamp_min(1.0)

    def forward(
        self, imgs: torch.Tensor, mask_ratio: float = 0.75, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """imgs [B, C, S, S] -> (loss scalar, pred [B, L, p*p*C], mask [B, L])."""
        latent, mask, ids_restore = self.forward_encoder(imgs, mask_ratio, generator)
        pred = self.forward_decoder(latent, ids_restore)
        return self.forward_loss(imgs, pred, mask), pred, mask

    # ------------------------------------------------------------ features
    def forward_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """Unmasked encoder tokens after the final norm: [B, C, S, S] -> [B, 1+L, D] (cls first)."""
        x = self._prepend_cls(self._embed_patches(imgs))
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x)

    def patch_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """Per-patch tokens [B, L, D]."""
        return self.forward_features(imgs)[:, 1:, :]

    def global_features(self, imgs: torch.Tensor) -> torch.Tensor:
        """One vector per image [B, D]: the mean of the patch tokens.

        The MAE objective never trains the cls token, so mean-pooled patch tokens are the stronger
        retrieval descriptor (as in MAE's own linear-probe / fine-tune ``global_pool``).
        """
        return self.patch_features(imgs).mean(dim=1)


def create_mae(name_or_config: str | MAEConfig | dict[str, Any], **overrides: Any) -> MaskedAutoencoder:
    """Build a MaskedAutoencoder from a preset name, an MAEConfig or a config dict."""
    if isinstance(name_or_config, str):
        if name_or_config not in MAE_PRESETS:
            raise ValueError(f"unknown MAE preset {name_or_config!r}; choose from {sorted(MAE_PRESETS)}")
        config = MAE_PRESETS[name_or_config]
    elif isinstance(name_or_config, MAEConfig):
        config = name_or_config
    else:
        config = MAEConfig.from_dict(name_or_config)
    if overrides:
        config = replace(config, **overrides)
    return MaskedAutoencoder(config)
