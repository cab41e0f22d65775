"""Stable Diffusion / ModelScope transformer blocks: the attention layers of UNet3D's ``attention_block:
transformer`` layout, so that pretrained SD image UNets and ModelScope T2V load into vdmkit's own UNet3D.

- :class:`TransformerBlock`: pre-norm self-attention, then cross-attention to the prompt (or a second
  self-attention), then a GEGLU feed-forward, each residual (diffusers' BasicTransformerBlock).
- :class:`SpatialTransformer`: per-frame GroupNorm, a projection in, transformer blocks over each frame's
  H*W tokens, a projection out, residual (diffusers' Transformer2DModel).
- :class:`TemporalTransformer`: GroupNorm over the whole clip, a projection in, blocks of two self-attentions
  over each pixel's T frames, a projection out, residual (diffusers' TransformerTemporalModel; ModelScope's
  temporal attention and its ``transformer_in``).
"""

from __future__ import annotations

import torch
from einops import rearrange
from torch import nn

from vdmkit.backbones.layers import Attention, FeedForward, group_norm

TRANSFORMER_NORM_EPS = 1e-6  # the GroupNorm in front of every SD / ModelScope transformer


class TransformerBlock(nn.Module):
    """(N, L, C) -> (N, L, C): self-attention; cross-attention to ``context`` (``context_dim``) or, with
    ``context_dim`` 0, a second self-attention; GEGLU feed-forward of ``ff_mult`` x C. LayerNorm before each."""

    def __init__(self, dim: int, heads: int, context_dim: int, ff_mult: int = 4):
        super().__init__()
        self.norm1, self.attn1 = nn.LayerNorm(dim), Attention(dim, heads)
        self.norm2, self.attn2 = nn.LayerNorm(dim), Attention(dim, heads, context_dim=context_dim or None)
        self.cross = bool(context_dim)
        self.norm3, self.ff = nn.LayerNorm(dim), FeedForward(dim, ff_mult)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                mask: torch.Tensor | None = None, self_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x), mask=self_mask)
        if self.cross:
            if context is not None:
                x = x + self.attn2(self.norm2(x), context, mask)
        else:
            x = x + self.attn2(self.norm2(x), mask=self_mask)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """(B, C, T, H, W) -> same: a transformer over each frame's pixels, reading the prompt per frame."""

    def __init__(self, channels: int, heads: int, text_dim: int, ff_mult: int = 4, groups: int = 32):
        super().__init__()
        self.norm = group_norm(channels, groups, TRANSFORMER_NORM_EPS)
        self.proj_in = nn.Linear(channels, channels)
        self.block = TransformerBlock(channels, heads, text_dim, ff_mult)
        self.proj_out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        t, h = x.shape[2], x.shape[3]
        s = self.proj_in(rearrange(self.norm(x), "b c t h w -> (b t) (h w) c"))
        s = self.proj_out(self.block(s, context, mask))  # ((B T), (H W), C)
        return x + rearrange(s, "(b t) (h w) c -> b c t h w", t=t, h=h)


class TemporalTransformer(nn.Module):
    """(B, C, T, H, W) -> same: two self-attentions and a feed-forward over each pixel's frames, width
    ``heads * head_dim`` inside. Images (T = 1) pass through unchanged unless ``on_images`` (ModelScope)."""

    def __init__(self, channels: int, heads: int, head_dim: int, ff_mult: int = 4, groups: int = 32,
                 on_images: bool = False):
        super().__init__()
        self.on_images = on_images
        inner = heads * head_dim
        self.norm = group_norm(channels, groups, TRANSFORMER_NORM_EPS, per_frame=False)
        self.proj_in = nn.Linear(channels, inner)
        self.block = TransformerBlock(inner, heads, 0, ff_mult)
        self.proj_out = nn.Linear(inner, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        if t == 1 and not self.on_images:
            return x
        s = self.proj_in(rearrange(self.norm(x), "b c t h w -> (b h w) t c"))  # statistics over the whole clip
        s = self.proj_out(self.block(s))
        return x + rearrange(s, "(b h w) t c -> b c t h w", b=b, h=h)
