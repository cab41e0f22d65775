"""Autoencoder training losses: reconstruction, KL, and an optional hinge patch-GAN (no downloaded weights)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdmkit.autoencoders.common import DiagonalGaussian


def reconstruction_loss(x: torch.Tensor, x_hat: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    diff = (x_hat.float() - x.float())
    return diff.abs().mean() if kind == "l1" else diff.square().mean()


def kl_loss(posterior: DiagonalGaussian, pixels_per_sample: int) -> torch.Tensor:
    """KL summed over the latent, per pixel of the input: with the reconstruction as a per-pixel mean,
    ``kl_weight`` keeps LDM's meaning (both summed over the sample there)."""
    return posterior.kl().float().mean() / pixels_per_sample


class PatchDiscriminator(nn.Module):
    """A small PatchGAN (Isola et al. 2017) on single frames: a logit per overlapping patch."""

    def __init__(self, in_channels: int = 3, channels: int = 32, layers: int = 3):
        super().__init__()
        mods: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2)]
        c = channels
        for _ in range(1, layers):
            mods += [nn.Conv2d(c, 2 * c, 4, 2, 1), nn.GroupNorm(8, 2 * c), nn.LeakyReLU(0.2)]
            c *= 2
        mods.append(nn.Conv2d(c, 1, 3, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, video: torch.Tensor) -> torch.Tensor:  # (B, C, T, H, W) -> patch logits
        return self.net(rearrange(video, "b c t h w -> (b t) c h w"))


def hinge_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())


def hinge_g_loss(fake_logits: torch.Tensor) -> torch.Tensor:
    return -fake_logits.mean()
