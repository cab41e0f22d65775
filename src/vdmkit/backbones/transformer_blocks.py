"""Stable Diffusion / ModelScope transformer blocks: the attention layers of UNet3D's ``attention_block:
transformer`` layout, so that pretrained SD image UNets and ModelScope T2V load into vdmkit's own UNet3D.

- :class:`TransformerBlock`: pre-norm self-attention, then cross-attention to the prompt (or a second
  self-attention), then a GEGLU feed-forward, each residual (diffusers' BasicTransformerBlock).
- :class:`SpatialTransformer`: per-frame GroupNorm, a projection in, transformer blocks over each frame's
  H*W tokens, a projection out, residual (diffusers' Transformer2DModel).
- :class:`TemporalTransformer`: GroupNorm over the whole clip, a projection in, blocks of two self-attentions
  over each pixel's T frames, a projection out, residual (diffusers' TransformerTemporalModel; ModelScope's
  temporal attention and its ``transformer_in``).
- :class:`MotionModule`: AnimateDiff's temporal transformer (Guo et al. 2023; diffusers' AnimateDiffTransformer3D):
  the same, with sinusoidal frame positions added before each self-attention, several blocks and a
  zero-initialised output projection, so that a module added to an image UNet starts as the identity.
"""

from __future__ import annotations

import math

import torch
from einops import rearrange
from torch import nn

from vdmkit.backbones.layers import (MAX_PERIOD, Attention, FeedForward, Linear, chunk_rows, chunkable, group_norm,
                                     in_chunks, zero_init)

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

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None, mask: torch.Tensor | None = None,
                self_mask: torch.Tensor | None = None, position: torch.Tensor | None = None) -> torch.Tensor:
        """``position`` (L, C): added to the normalised input of each self-attention (AnimateDiff)."""
        x = x + self.attn1(positioned(self.norm1(x), position), mask=self_mask)
        if self.cross:
            if context is not None:
                x = x + self.attn2(self.norm2(x), context, mask)
        else:
            x = x + self.attn2(positioned(self.norm2(x), position), mask=self_mask)
        return x + self.ff(self.norm3(x))


def positioned(x: torch.Tensor, position: torch.Tensor | None) -> torch.Tensor:
    return x if position is None else x + position.to(x.dtype)


class SpatialTransformer(nn.Module):
    """(B, C, T, H, W) -> same: a transformer over each frame's pixels, reading the prompt per frame."""

    def __init__(self, channels: int, heads: int, text_dim: int, ff_mult: int = 4, groups: int = 32):
        super().__init__()
        self.norm = group_norm(channels, groups, TRANSFORMER_NORM_EPS)
        self.proj_in = Linear(channels, channels)
        self.block = TransformerBlock(channels, heads, text_dim, ff_mult)
        self.proj_out = Linear(channels, channels)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = rearrange(x, "b c t h w -> (b t) c h w")  # frames are independent here: inference chunks them
        step = chunk_rows(b * t, h * w * self.block.ff.proj_in.out_features) if chunkable(self) else b * t
        return rearrange(in_chunks(self.frames, step, frames, context, mask), "(b t) c h w -> b c t h w", b=b)

    def frames(self, x: torch.Tensor, context: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        """(N, C, H, W) frames with their (N, L, D) context and mask -> the same frames transformed."""
        h = x.shape[2]
        s = self.proj_in(rearrange(self.norm(x), "n c h w -> n (h w) c"))
        s = self.proj_out(self.block(s, context, mask))  # (N, (H W), C)
        return x + rearrange(s, "n (h w) c -> n c h w", h=h)


class OverTime(nn.Module):
    """(B, C, T, H, W) -> same: ``x + proj_out(mix(proj_in(norm(x))))`` on each pixel's sequence of T frames, the
    GroupNorm's statistics over the whole clip. Subclasses build ``norm``, ``proj_in``, ``proj_out`` and ``mix``.
    Images (T = 1) pass through unchanged unless ``on_images``."""

    on_images: bool

    def mix(self, s: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, t, h, w = x.shape
        if t == 1 and not self.on_images:
            return x
        s = rearrange(self.norm(x), "b c t h w -> (b h w) t c")  # statistics over the whole clip
        step = chunk_rows(b * h * w, t * self.width()) if chunkable(self) else b * h * w  # pixels are independent
        s = in_chunks(lambda part: self.proj_out(self.mix(self.proj_in(part))), step, s)
        return x + rearrange(s, "(b h w) t c -> b c t h w", b=b, h=h)

    def width(self) -> int:
        """Elements per frame of the widest temporary inside (the feed-forward's hidden pair)."""
        return max(m.proj_in.out_features for m in self.modules() if isinstance(m, FeedForward))


class TemporalTransformer(OverTime):
    """Two self-attentions and a feed-forward over each pixel's frames, width ``heads * head_dim`` inside
    (ModelScope's temporal attention and ``transformer_in``)."""

    def __init__(self, channels: int, heads: int, head_dim: int, ff_mult: int = 4, groups: int = 32,
                 on_images: bool = False):
        super().__init__()
        self.on_images = on_images
        inner = heads * head_dim
        self.norm = group_norm(channels, groups, TRANSFORMER_NORM_EPS, per_frame=False)
        self.proj_in = Linear(channels, inner)
        self.block = TransformerBlock(inner, heads, 0, ff_mult)
        self.proj_out = Linear(inner, channels)

    def mix(self, s: torch.Tensor) -> torch.Tensor:
        return self.block(s)


class MotionModule(OverTime):
    """AnimateDiff's motion module on ``channels`` wide features: ``layers`` blocks of two self-attentions (``heads``
    heads of channels / heads) and a GEGLU feed-forward over each pixel's frames, the sinusoidal position of each
    frame (at most ``max_frames``) added before every self-attention. The output projection starts at zero: the
    module starts as the identity. It runs on one-frame inputs too, as AnimateDiff does."""

    def __init__(self, channels: int, heads: int, layers: int = 1, max_frames: int = 32, groups: int = 32):
        super().__init__()
        self.on_images = True
        self.norm = group_norm(channels, groups, TRANSFORMER_NORM_EPS, per_frame=False)
        self.proj_in = Linear(channels, channels)
        self.blocks = nn.ModuleList(TransformerBlock(channels, heads, 0) for _ in range(layers))
        self.proj_out = zero_init(Linear(channels, channels))
        self.register_buffer("positions", frame_positions(max_frames, channels), persistent=False)

    @property
    def max_frames(self) -> int:
        return self.positions.shape[0]

    def mix(self, s: torch.Tensor) -> torch.Tensor:
        position = self.positions[: s.shape[1]]  # (T, C)
        for block in self.blocks:
            s = block(s, position=position)
        return s


def frame_positions(frames: int, dim: int) -> torch.Tensor:
    """AnimateDiff's (and Vaswani et al.'s) position table (frames, dim): sin(p w_i) at channel 2i and cos(p w_i) at
    2i + 1, w_i = MAX_PERIOD^(-2i / dim)."""
    position = torch.arange(frames, dtype=torch.float32)[:, None]
    frequency = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(MAX_PERIOD) / dim))
    table = torch.zeros(frames, dim)
    table[:, 0::2] = torch.sin(position * frequency)
    table[:, 1::2] = torch.cos(position * frequency)
    return table
