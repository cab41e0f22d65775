"""Attention at one UNet3D level in vdmkit's own layout (``attention_block: space_time``): spatial self-attention,
cross-attention to the prompt per frame, temporal attention over each pixel's frames (or one joint space-time
attention), optional feed-forwards; and the position features it can add (pixel, frame, travelling waves).
"""

from __future__ import annotations

import torch
from einops import rearrange, repeat
from torch import nn

from vdmkit.backbones.layers import (
    Attention,
    FeedForward,
    ImageFrames,
    RelativePositionBias,
    fourier_frequencies,
    grid_features,
    rope_table,
    timestep_embedding,
    travelling_waves,
)
from vdmkit.conditioning.text import TextCondition

def grid_position_embedding(height: int, width: int, dim: int, device=None) -> torch.Tensor:
    """(H*W, dim) sin-cos features: the first half encodes the row, the second the column."""
    rows = timestep_embedding(torch.arange(height, device=device), dim // 2)  # (H, dim/2)
    cols = timestep_embedding(torch.arange(width, device=device), dim - dim // 2)  # (W, dim/2)
    return grid_features([rows, cols], dim)


def repeat_text(text: TextCondition, repeats: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (B*repeats, L, D) and key mask (B*repeats, 1, 1, L) for attention over B*repeats sequences."""
    return text.tokens.repeat_interleave(repeats, dim=0), text.mask.repeat_interleave(repeats, dim=0)[:, None, None, :]


class SpaceTimeAttention(nn.Module):
    """Attention at one level: space-time attention (``temporal_attention``: "divided" = spatial self-attention
    now, temporal self-attention after the cross-attention; "full" = one joint attention over T*H*W tokens;
    "none" = spatial only), cross-attention to the text per frame, optional GEGLU feed-forwards."""

    def __init__(self, dim: int, head_dim: int, text_dim: int, frame_position: str = "sinusoidal",
                 temporal_text: bool = False, spatial_position: str = "none", cross_position: str = "none",
                 temporal_attention: str = "divided", ff_mult: int = 0, cross_fourier_scale: float = 1.5,
                 temporal_position: str = "bias"):
        super().__init__()
        self.temporal_position = temporal_position  # UNet3DConfig.temporal_position
        self.frame_position = frame_position
        self.spatial_position = spatial_position
        self.cross_position = cross_position  # "none", "sincos" or "fourier" (UNet3DConfig.cross_position)
        if self.cross_position == "fourier" and text_dim:
            self.register_buffer("cross_frequencies", fourier_frequencies(dim, cross_fourier_scale))
        self.joint = self.temporal = self.temporal_cross = self.ff = self.temporal_ff = None
        heads = dim // head_dim
        divided = temporal_attention == "divided"
        if temporal_attention == "full":  # at T = 1 this is spatial attention
            self.norm_joint = nn.LayerNorm(dim)
            self.joint = Attention(dim, heads)
        else:
            self.norm_spatial = nn.LayerNorm(dim)
            self.spatial = Attention(dim, heads)
        self.norm_cross = nn.LayerNorm(dim) if text_dim else None
        self.cross = Attention(dim, heads, context_dim=text_dim) if text_dim else None
        if divided:
            self.norm_temporal = nn.LayerNorm(dim)
            self.temporal = Attention(dim, heads)
            self.position = RelativePositionBias(heads) if temporal_position == "bias" else None
            self.norm_temporal_cross = nn.LayerNorm(dim) if text_dim and temporal_text else None
            self.temporal_cross = Attention(dim, heads, context_dim=text_dim) if text_dim and temporal_text else None
        if ff_mult:
            self.norm_ff = nn.LayerNorm(dim)
            self.ff = FeedForward(dim, ff_mult)
        if ff_mult and divided:
            self.norm_temporal_ff = nn.LayerNorm(dim)
            self.temporal_ff = FeedForward(dim, ff_mult, zero_out=True)  # the temporal block starts as the identity

    def _pixel_frame_position(self, t: int, h: int, w: int, frame_pos: torch.Tensor | None,
                              like: torch.Tensor) -> torch.Tensor:
        """Pixel + frame positions (rows, H*W, C) in ``like``'s dtype; rows = T, or B*T with per-sample frames.

        Their sum enters the logits additively, so each word's attention weight factorises into a function of
        where times a function of when: a band moving across the frame, whose direction the word picks.
        """
        c = like.shape[-1]
        rows = t if frame_pos is None else frame_pos.shape[0]
        pos = torch.zeros(rows, h * w, c, device=like.device, dtype=like.dtype)
        if self.spatial_position == "sinusoidal":
            pos = pos + grid_position_embedding(h, w, c, like.device).to(like.dtype)[None]
        if frame_pos is not None:
            pos = pos + frame_pos.to(like.dtype)[:, None]
        return pos

    def _fourier_position(self, t: int, h: int, w: int, frames: ImageFrames | None,
                          like: torch.Tensor) -> torch.Tensor:
        """Random Fourier features of (t / T, y / H, x / W): (rows, H*W, C), rows = T or B*T (per-sample frames,
        an image frame at t = 0). Zero-padded when C is odd."""
        dev = like.device
        if frames is None:
            tt = torch.arange(t, device=dev) / t
        else:  # each sample's video frames span its clip; images sit at t = 0
            tt = (frames.index() / frames.video.sum(1, keepdim=True).clamp(min=1)).flatten()
        return travelling_waves(tt, h, w, self.cross_frequencies.to(dev), like.shape[-1]).to(like.dtype)

    def _frame_position(self, t: int, c: int, device, frames: ImageFrames | None) -> torch.Tensor | None:
        """Sin-cos features of each frame's index: (T, C), or (B*T, C) counting video frames only; None if off."""
        if self.frame_position != "sinusoidal":
            return None
        index = torch.arange(t, device=device) if frames is None else frames.index().flatten()
        return timestep_embedding(index, c)

    def forward(self, x: torch.Tensor, text: TextCondition | None, frames: ImageFrames | None = None) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frame_pos = self._frame_position(t, c, x.device, frames)
        if self.joint is not None:
            s = self._joint(x, frame_pos, frames)  # ((B T), (H W), C)
        else:
            s = rearrange(x, "b c t h w -> (b t) (h w) c")
            q = self.norm_spatial(s)
            if self.spatial_position == "sinusoidal":
                q = q + grid_position_embedding(h, w, s.shape[-1], s.device).to(q.dtype)  # (H*W, C)
            s = s + self.spatial(q)
        if self.cross is not None and text is not None:
            q = self.norm_cross(s)
            if self.cross_position != "none":
                pos = (self._fourier_position(t, h, w, frames, q) if self.cross_position == "fourier"
                       else self._pixel_frame_position(t, h, w, frame_pos, q))  # (T or B*T, H*W, C)
                q = q + pos.repeat(q.shape[0] // pos.shape[0], 1, 1)
            s = s + self.cross(q, *repeat_text(text, t))  # one copy per frame
        if self.ff is not None:
            s = s + self.ff(self.norm_ff(s))
        if t == 1 or self.temporal is None:
            return rearrange(s, "(b t) (h w) c -> b c t h w", t=t, h=h)
        s = rearrange(s, "(b t) (h w) c -> (b h w) t c", t=t, h=h)
        return rearrange(self._temporal(s, text, frame_pos, frames, h * w), "(b h w) t c -> b c t h w", b=b, h=h)

    def _joint(self, x: torch.Tensor, frame_pos: torch.Tensor | None, frames: ImageFrames | None) -> torch.Tensor:
        """Full space-time self-attention over each clip's T*H*W tokens; image frames attend to their own frame."""
        t, h, w = x.shape[2:]
        s = rearrange(x, "b c t h w -> b (t h w) c")
        q = self.norm_joint(s)
        if self.spatial_position == "sinusoidal" or frame_pos is not None:
            pos = self._pixel_frame_position(t, h, w, frame_pos, q)  # 3D positions: (T or B*T, H*W, C)
            q = q + pos.reshape(-1, t * h * w, q.shape[-1])  # (1 or B, T*H*W, C)
        mask = None
        if frames is not None:
            mask = repeat(frames.pairs(), "b i j -> b 1 (i n) (j m)", n=h * w, m=h * w)  # (B, 1, THW, THW)
        s = s + self.joint(q, mask=mask)
        return rearrange(s, "b (t h w) c -> (b t) (h w) c", t=t, h=h)

    def _temporal(self, s: torch.Tensor, text: TextCondition | None, frame_pos: torch.Tensor | None,
                  frames: ImageFrames | None, pixels: int) -> torch.Tensor:
        """Temporal self-attention, cross-attention and feed-forward on each pixel's frames ((B H W), T, C)."""
        t = s.shape[1]
        bias = self.position(t) if self.position is not None else None  # (heads, T, T): an additive bias
        rope = rope_table(t, s.shape[-1] // self.temporal.heads, s.device) if self.temporal_position == "rope" else None
        keep = None
        if frames is not None:  # image frames: attend to themselves only, residuals gated off
            if bias is None:
                bias = torch.zeros(self.temporal.heads, t, t, device=s.device)
            bias = bias[None].masked_fill(~frames.pairs()[:, None], float("-inf"))  # (B, heads, T, T)
            bias = repeat(bias, "b heads i j -> (b n) heads i j", n=pixels)
            keep = repeat(frames.video, "b t -> (b n) t 1", n=pixels).to(s.dtype)
            if frame_pos is not None:
                frame_pos = repeat(frame_pos, "(b t) c -> (b n) t c", t=t, n=pixels)
        q = self.norm_temporal(s)
        pos = None
        if frame_pos is not None:
            pos = frame_pos.to(q.dtype)  # (T, C) or ((B H W), T, C)
            q = q + pos
        s = s + gated(self.temporal(q, mask=bias, rope=rope), keep)
        if self.temporal_cross is not None and text is not None:  # each pixel's frame sequence reads the prompt
            q = self.norm_temporal_cross(s)
            if self.cross_position != "none" and pos is not None:
                q = q + pos
            s = s + gated(self.temporal_cross(q, *repeat_text(text, pixels)), keep)  # one per pixel
        if self.temporal_ff is not None:
            s = s + gated(self.temporal_ff(self.norm_temporal_ff(s)), keep)
        return s


def gated(x: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """``x`` zeroed where ``keep`` is 0 (image frames); ``x`` itself without a mask."""
    return x if keep is None else x * keep
