"""A pixel- or latent-space 3D UNet in the VDM / Make-A-Video style.

Every block is a per-frame image layer followed by a temporal layer: 1x3x3 spatial convolutions with a
3x1x1 temporal convolution (pseudo-3D), spatial self- and cross-attention followed by temporal
attention. Temporal layers start as the identity (zero-initialised residual branches) and are skipped
for T = 1, so the network is a per-frame image model at initialisation and on images.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdmkit.backbones.layers import (
    Attention,
    RelativePositionBias,
    grid_features,
    group_norm,
    timestep_embedding,
    zero_init,
)
from vdmkit.conditioning.text import TextCondition
from vdmkit.errors import ConfigError, ConstraintError

SPATIAL_3X3 = (1, 3, 3)
SPATIAL_PAD = (0, 1, 1)
FRAME_POSITIONS = ("sinusoidal", "none")


@dataclass
class UNet3DConfig:
    in_channels: int = 3
    out_channels: int = 3
    channels: tuple[int, ...] = (32, 64, 128)  # width per resolution level; each level halves H and W
    blocks_per_level: int = 1
    attention_levels: tuple[int, ...] = (1, 2)  # levels (0 = full resolution) with attention blocks
    head_dim: int = 32
    temporal_kernel: int = 3
    text_dim: int = 128  # width of the text encoder's tokens; 0 = unconditional
    dropout: float = 0.0
    # absolute frame index fed to temporal attention: "sinusoidal" (as AnimateDiff's motion module) or "none".
    # Spatial layers are identical on every frame and relative position biases are shift-invariant, so
    # without it the net cannot tell frame 0 from frame 15 and motion direction cannot follow the prompt.
    frame_position: str = "sinusoidal"
    # text reaches the temporal layers directly: cross-attention to the prompt inside temporal attention
    # (VideoCrafter's temporal cross-attention option) and the time+pooled-text embedding modulating the
    # temporal conv (scale/shift). Without it, motion words only reach time through per-frame layers.
    temporal_text: bool = True
    # 2D sin-cos position of each pixel added to the spatial attention input. Convolutions and attention are
    # translation-equivariant, so without it "where" (a shape starting on the right when the prompt says it
    # moves left) can only be inferred from the zero padding at the borders.
    spatial_position: str = "sinusoidal"
    # the same positions also enter the cross-attention queries (pixel + frame in the spatial one, frame in
    # the temporal one), so how much a pixel of a frame reads each prompt word depends on where and when it
    # is: one layer couples "left"/"right" with position and time instead of several
    position_in_cross: bool = False

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.attention_levels = tuple(int(a) for a in self.attention_levels)
        if not self.channels or any(c <= 0 or c % self.head_dim for c in self.channels):
            raise ConfigError(f"model.channels {self.channels} must be positive multiples of head_dim={self.head_dim}")
        bad = [a for a in self.attention_levels if not 0 <= a < len(self.channels)]
        if bad:
            raise ConfigError(f"model.attention_levels {bad} out of range for {len(self.channels)} levels")
        for name in ("frame_position", "spatial_position"):
            if getattr(self, name) not in FRAME_POSITIONS:
                raise ConfigError(f"model.{name} must be one of {', '.join(FRAME_POSITIONS)}, "
                                  f"got {getattr(self, name)!r}")
        if self.temporal_kernel % 2 != 1:
            raise ConfigError(f"model.temporal_kernel must be odd, got {self.temporal_kernel}")

    @property
    def spatial_factor(self) -> int:
        """H and W must be divisible by this."""
        return 2 ** (len(self.channels) - 1)

    def check_shape(self, frames: int, height: int, width: int) -> None:
        """ConstraintError naming the nearest valid size if this UNet cannot take (frames, height, width)."""
        f = self.spatial_factor
        if height % f or width % f:
            raise ConstraintError(
                f"height and width must be divisible by {f} for this UNet, got {height}x{width}; "
                f"nearest valid: {max(f, round(height / f) * f)}x{max(f, round(width / f) * f)}")


class ResBlock3D(nn.Module):
    """Spatial residual block conditioned on the embedding (scale/shift), then a temporal conv."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, temporal_kernel: int, dropout: float,
                 temporal_emb: bool = False):
        super().__init__()
        self.norm1 = group_norm(c_in)
        self.conv1 = nn.Conv3d(c_in, c_out, SPATIAL_3X3, padding=SPATIAL_PAD)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = group_norm(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(nn.Conv3d(c_out, c_out, SPATIAL_3X3, padding=SPATIAL_PAD))
        self.skip = nn.Conv3d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.temporal_norm = group_norm(c_out)
        self.temporal_conv = zero_init(
            nn.Conv3d(c_out, c_out, (temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0)))
        self.temporal_emb = zero_init(nn.Linear(emb_dim, 2 * c_out)) if temporal_emb else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, C', T, H, W)
        scale, shift = self.emb(F.silu(emb))[:, :, None, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.skip(x) + self.conv2(self.dropout(F.silu(h)))
        if h.shape[2] > 1:  # images (T = 1) skip temporal layers
            g = self.temporal_norm(h)
            if self.temporal_emb is not None:
                scale_t, shift_t = self.temporal_emb(F.silu(emb))[:, :, None, None, None].chunk(2, dim=1)
                g = g * (1 + scale_t) + shift_t
            h = h + self.temporal_conv(F.silu(g))
        return h


def grid_position_embedding(height: int, width: int, dim: int, device=None) -> torch.Tensor:
    """(H*W, dim) sin-cos features: the first half encodes the row, the second the column."""
    rows = timestep_embedding(torch.arange(height, device=device), dim // 2)  # (H, dim/2)
    cols = timestep_embedding(torch.arange(width, device=device), dim - dim // 2)  # (W, dim/2)
    return grid_features([rows, cols], dim)


def repeat_text(text: TextCondition, repeats: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tokens (B*repeats, L, D) and key mask (B*repeats, 1, 1, L) for attention over B*repeats sequences."""
    return text.tokens.repeat_interleave(repeats, dim=0), text.mask.repeat_interleave(repeats, dim=0)[:, None, None, :]


class SpaceTimeAttention(nn.Module):
    """Factorised attention: spatial self-attention, cross-attention to text, temporal self-attention."""

    def __init__(self, dim: int, head_dim: int, text_dim: int, frame_position: str = "sinusoidal",
                 temporal_text: bool = False, spatial_position: str = "none", position_in_cross: bool = False):
        super().__init__()
        self.frame_position = frame_position
        self.spatial_position = spatial_position
        self.position_in_cross = position_in_cross
        heads = dim // head_dim
        self.norm_spatial = nn.LayerNorm(dim)
        self.spatial = Attention(dim, heads)
        self.norm_cross = nn.LayerNorm(dim) if text_dim else None
        self.cross = Attention(dim, heads, context_dim=text_dim) if text_dim else None
        self.norm_temporal = nn.LayerNorm(dim)
        self.temporal = Attention(dim, heads)
        self.position = RelativePositionBias(heads)
        self.norm_temporal_cross = nn.LayerNorm(dim) if text_dim and temporal_text else None
        self.temporal_cross = Attention(dim, heads, context_dim=text_dim) if text_dim and temporal_text else None

    def _cross_position(self, t: int, h: int, w: int, q: torch.Tensor) -> torch.Tensor:
        """Pixel + frame positions for the spatial cross-attention queries, ((B*T), H*W, C)-broadcastable.

        Their sum enters the logits additively, so each word's attention weight factorises into a function of
        where times a function of when: a band moving across the frame, whose direction the word picks.
        """
        c = q.shape[-1]
        pos = torch.zeros(t, h * w, c, device=q.device, dtype=q.dtype)
        if self.spatial_position == "sinusoidal":
            pos = pos + grid_position_embedding(h, w, c, q.device).to(q.dtype)[None]
        if self.frame_position == "sinusoidal":
            pos = pos + timestep_embedding(torch.arange(t, device=q.device), c).to(q.dtype)[:, None]
        return pos.repeat(q.shape[0] // t, 1, 1)

    def forward(self, x: torch.Tensor, text: TextCondition | None) -> torch.Tensor:
        b, _, t, h, w = x.shape
        s = rearrange(x, "b c t h w -> (b t) (h w) c")
        q = self.norm_spatial(s)
        pos = None
        if self.spatial_position == "sinusoidal":
            pos = grid_position_embedding(h, w, s.shape[-1], s.device).to(q.dtype)  # (H*W, C)
            q = q + pos
        s = s + self.spatial(q)
        if self.cross is not None and text is not None:
            q = self.norm_cross(s)
            if self.position_in_cross:
                q = q + self._cross_position(t, h, w, q)
            s = s + self.cross(q, *repeat_text(text, t))  # one copy per frame
        if t == 1:
            return rearrange(s, "(b t) (h w) c -> b c t h w", t=t, h=h)
        s = rearrange(s, "(b t) (h w) c -> (b h w) t c", t=t, h=h)
        q = self.norm_temporal(s)
        pos = None
        if self.frame_position == "sinusoidal":
            pos = timestep_embedding(torch.arange(t, device=s.device), s.shape[-1]).to(q.dtype)  # (T, C)
            q = q + pos
        s = s + self.temporal(q, mask=self.position(t))
        if self.temporal_cross is not None and text is not None:  # each pixel's frame sequence reads the prompt
            q = self.norm_temporal_cross(s)
            if self.position_in_cross and pos is not None:
                q = q + pos
            s = s + self.temporal_cross(q, *repeat_text(text, h * w))  # one per pixel
        return rearrange(s, "(b h w) t c -> b c t h w", b=b, h=h)


class Level(nn.Module):
    """One resolution level of the encoder or decoder: residual blocks, each optionally with attention."""

    def __init__(self, c_ins: list[int], c_out: int, cfg: UNet3DConfig, emb_dim: int, attention: bool):
        super().__init__()
        self.res = nn.ModuleList(ResBlock3D(c, c_out, emb_dim, cfg.temporal_kernel, cfg.dropout, cfg.temporal_text)
                                 for c in c_ins)
        self.attn = nn.ModuleList(
            SpaceTimeAttention(c_out, cfg.head_dim, cfg.text_dim, cfg.frame_position, cfg.temporal_text,
                               cfg.spatial_position, cfg.position_in_cross)
            if attention else nn.Identity() for _ in c_ins)


class UNet3D(nn.Module):
    """``model(x_t, t, text) -> prediction``; x_t (B, C, T, H, W), t (B,), text a TextCondition or None."""

    def __init__(self, cfg: UNet3DConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        emb_dim = 4 * ch[0]
        self.time_mlp = nn.Sequential(nn.Linear(ch[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.text_to_emb = nn.Linear(cfg.text_dim, emb_dim) if cfg.text_dim else None
        self.conv_in = nn.Conv3d(cfg.in_channels, ch[0], SPATIAL_3X3, padding=SPATIAL_PAD)

        skips = [ch[0]]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = ch[0]
        for i, c_out in enumerate(ch):
            ins = [c] + [c_out] * (cfg.blocks_per_level - 1)
            self.down.append(Level(ins, c_out, cfg, emb_dim, i in cfg.attention_levels))
            c = c_out
            skips += [c] * cfg.blocks_per_level
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv3d(c, c, SPATIAL_3X3, stride=(1, 2, 2), padding=SPATIAL_PAD))
                skips.append(c)
        self.mid = Level([c, c], c, cfg, emb_dim, attention=True)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, c_out in reversed(list(enumerate(ch))):
            ins = []
            for _ in range(cfg.blocks_per_level + 1):
                ins.append(c + skips.pop())
                c = c_out
            self.up.append(Level(ins, c_out, cfg, emb_dim, i in cfg.attention_levels))
            if i > 0:
                self.upsample.append(nn.Conv3d(c, c, SPATIAL_3X3, padding=SPATIAL_PAD))
        self.norm_out = group_norm(c)
        self.conv_out = zero_init(nn.Conv3d(c, cfg.out_channels, SPATIAL_3X3, padding=SPATIAL_PAD))

    def check_input(self, x: torch.Tensor) -> None:
        b, c, t, h, w = x.shape
        if c != self.cfg.in_channels:
            raise ConstraintError(f"UNet3D expects {self.cfg.in_channels} input channels, got {c}")
        self.cfg.check_shape(t, h, w)

    def forward(self, x: torch.Tensor, t: torch.Tensor, text: TextCondition | None = None) -> torch.Tensor:
        self.check_input(x)
        emb = self.time_mlp(timestep_embedding(t, self.cfg.channels[0]).to(x.dtype))  # (B, E)
        if self.text_to_emb is not None and text is not None:
            emb = emb + self.text_to_emb(text.pooled)
        h = self.conv_in(x)  # (B, C0, T, H, W)
        skips = [h]
        for i, level in enumerate(self.down):
            for res, attn in zip(level.res, level.attn):
                h = self._block(res, attn, h, emb, text)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)  # (B, C, T, H/2, W/2)
                skips.append(h)
        for res, attn in zip(self.mid.res, self.mid.attn):
            h = self._block(res, attn, h, emb, text)
        for i, level in enumerate(self.up):
            for res, attn in zip(level.res, level.attn):
                h = self._block(res, attn, torch.cat([h, skips.pop()], dim=1), emb, text)
            if i < len(self.upsample):
                # conv at the low resolution, then nearest upsampling: 4x fewer FLOPs than the reverse order
                h = F.interpolate(self.upsample[i](h), scale_factor=(1, 2, 2), mode="nearest")  # (B, C, T, 2H, 2W)
        return self.conv_out(F.silu(self.norm_out(h)))

    @staticmethod
    def _block(res, attn, h, emb, text):
        h = res(h, emb)
        return h if isinstance(attn, nn.Identity) else attn(h, text)
