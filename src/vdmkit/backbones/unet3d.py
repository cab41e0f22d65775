"""A pixel- or latent-space 3D UNet: VDM, Make-A-Video and ModelScope T2V as configurations of one family.

Every block is a per-frame image layer followed by temporal layers, chosen along two axes:

- ``temporal_conv``: ``pseudo3d`` (Make-A-Video: 1x3x3 convolutions, then a zero-initialised 3x1x1 temporal
  convolution), ``full3d`` (3x3x3 convolutions, no separate temporal layer) or ``none`` (VDM's space-only
  1x3x3 convolutions; time is mixed by attention alone);
- ``temporal_attention``: ``divided`` (spatial self- and cross-attention, then temporal attention with a
  zero-initialised output), ``full`` (one joint attention over all T*H*W tokens, then cross-attention) or
  ``none`` (spatial and cross-attention only).

Zero-initialised temporal layers start as the identity and are skipped for T = 1, so with ``pseudo3d`` or
``none`` convolutions and ``divided`` or no temporal attention the network is a per-frame image model at
initialisation and on images. ``full3d`` and ``full`` mix frames inside the image layers themselves, so
that holds only at T = 1 (an image sees the centre time taps and its own frame). Joint image-video
batches mark image samples or frames with ``is_image``: temporal layers leave them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from vdmkit.backbones.layers import (
    Attention,
    FeedForward,
    FrameConv,
    ImageFrames,
    RelativePositionBias,
    TemporalConv,
    check_conditioning,
    fourier_frequencies,
    frame_conv,
    grid_features,
    group_norm,
    image_frames,
    timestep_embedding,
    travelling_waves,
    zero_init,
)
from vdmkit.conditioning.condition import Condition, as_condition
from vdmkit.conditioning.text import TextCondition
from vdmkit.errors import ConfigError, ConstraintError

SPATIAL_3X3 = (1, 3, 3)
SPATIAL_PAD = (0, 1, 1)
FRAME_POSITIONS = ("sinusoidal", "none")
TEMPORAL_CONVS = ("pseudo3d", "full3d", "none")
TEMPORAL_ATTENTIONS = ("divided", "full", "none")
CROSS_POSITIONS = ("none", "sincos", "fourier")


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
    # Each half needs its layer: divided temporal attention, pseudo3d convs (full attention and full3d convs
    # already see the prompt, through the per-frame cross-attention and the block's embedding).
    temporal_text: bool = True
    # 2D sin-cos position of each pixel added to the spatial attention input. Convolutions and attention are
    # translation-equivariant, so without it "where" (a shape starting on the right when the prompt says it
    # moves left) can only be inferred from the zero padding at the borders.
    spatial_position: str = "sinusoidal"
    # the same positions also enter the cross-attention queries (pixel + frame in the spatial one, frame in
    # the temporal one), so how much a pixel of a frame reads each prompt word depends on where and when it
    # is: one layer couples "left"/"right" with position and time instead of several
    position_in_cross: bool = False
    # positions in the spatial cross-attention queries (position_in_cross: true means "sincos"):
    # "sincos" adds the pixel and frame sin-cos features above; their sum enters each word's logit additively,
    # so a word can pick a place or a time but not a place that moves with time: in the shapes probes the
    # prompt chose the axis of motion, never its sign. "fourier" adds random Fourier features of (t, y, x)
    # (Tancik et al. 2020): plane waves sin(2 pi (f_t t + f_y y + f_x x)) travelling in every direction, so a
    # word can select the waves that move its way with a logit linear in the features. This is what made the
    # shapes model follow "left"/"right" (BENCHMARKS.md, direction probes). Coordinates are fractions of the
    # clip (t / T, y / H, x / W); the frequencies (cycles per clip, N(0, cross_fourier_scale^2)) are drawn once
    # from a fixed seed and saved in the checkpoint.
    cross_position: str = "none"
    cross_fourier_scale: float = 1.5
    # the temporal layer of every residual block: "pseudo3d" (Make-A-Video: 1x3x3 convs, then a zero-initialised
    # temporal_kernel x1x1 conv), "full3d" (temporal_kernel x3x3 convs, no separate temporal conv; randomly
    # initialised, so at init a video is NOT processed frame by frame; an image sees only the centre time
    # taps) or "none" (VDM's space-only 1x3x3 convs: frames meet only in attention)
    temporal_conv: str = "pseudo3d"
    # attention at attention levels: "divided" (spatial, cross, then temporal attention with zero-initialised
    # output), "full" (one joint space-time attention over T*H*W tokens with 3D positions, then cross) or "none"
    temporal_attention: str = "divided"
    temporal_conv_layers: int = 1  # pseudo3d: (norm, SiLU, conv) layers, the last zero-init (ModelScope: 4)
    ff_mult: int = 0  # GEGLU feed-forward after the attentions, hidden = ff_mult * width (SD/ModelScope: 4); 0 = none

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
        if self.position_in_cross and self.cross_position == "none":  # the older boolean spelling
            self.cross_position = "sincos"
        for name, valid in (("temporal_conv", TEMPORAL_CONVS), ("temporal_attention", TEMPORAL_ATTENTIONS),
                            ("cross_position", CROSS_POSITIONS)):
            if getattr(self, name) not in valid:
                raise ConfigError(f"model.{name}={getattr(self, name)!r} unknown; valid: {', '.join(valid)}")
        if self.temporal_kernel % 2 != 1:
            raise ConfigError(f"model.temporal_kernel must be odd, got {self.temporal_kernel}")
        if self.temporal_conv_layers < 1:
            raise ConfigError(f"model.temporal_conv_layers must be >= 1, got {self.temporal_conv_layers}")
        if self.ff_mult < 0:
            raise ConfigError(f"model.ff_mult must be >= 0 (0 = no feed-forward), got {self.ff_mult}")
        self.position_in_cross = self.cross_position != "none"
        if not self.cross_fourier_scale > 0:
            raise ConfigError(f"model.cross_fourier_scale must be > 0, got {self.cross_fourier_scale}")

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


@dataclass
class UNet3DTinyConfig(UNet3DConfig):
    """CPU tests and smoke runs (configs/tiny.yaml's layout): two levels of 32 channels, attention at the second."""

    channels: tuple[int, ...] = (32, 32)
    attention_levels: tuple[int, ...] = (1,)


@dataclass
class UNet3DSmallConfig(UNet3DConfig):
    """ModelScope's layout at bench_backbones.py's small size, pseudo-3D (Make-A-Video) temporal layers: four
    levels (64, 128, 256, 256), two blocks each, attention at the first three."""

    channels: tuple[int, ...] = (64, 128, 256, 256)
    blocks_per_level: int = 2
    attention_levels: tuple[int, ...] = (0, 1, 2)


@dataclass
class ModelScopeT2VConfig(UNet3DConfig):
    """ModelScope text-to-video (Wang et al. 2023; diffusers' UNet3DConditionModel of text-to-video-ms-1.7b):
    4 latent channels, levels (320, 640, 1280, 1280) with 2 blocks each, attention at the first three, 64-wide
    heads, 1024-wide text (OpenCLIP ViT-H), GEGLU feed-forwards, pseudo-3D convs of 4 layers, no absolute
    positions. Config only, never trained here: 1.39B parameters, against 1.41B in diffusers (which also
    has linear projections around each transformer and a temporal transformer after conv_in)."""

    in_channels: int = 4
    out_channels: int = 4
    channels: tuple[int, ...] = (320, 640, 1280, 1280)
    blocks_per_level: int = 2
    attention_levels: tuple[int, ...] = (0, 1, 2)
    head_dim: int = 64
    text_dim: int = 1024
    frame_position: str = "none"
    spatial_position: str = "none"
    temporal_text: bool = False
    temporal_conv_layers: int = 4
    ff_mult: int = 4


class SpaceTimeConv(nn.Conv3d):
    """A (k, 3, 3) convolution in which images see only the centre time tap.

    At T = 1 the kernel is cropped to its centre tap (what zero padding in time computes, at 1/k the cost);
    with ``frames``, image frames get the centre-tap result and video frames see image frames as zeros.
    A kernel one frame long is the plain per-frame convolution. Per-frame work runs as a 2D convolution on
    the folded frames (``frame_conv``: the Conv3d's slow fp32 CPU path avoided, results unchanged).
    """

    def forward(self, x: torch.Tensor, frames: ImageFrames | None = None) -> torch.Tensor:
        k = self.kernel_size[0]
        if k > 1 and x.shape[2] > 1 and frames is None:
            return super().forward(x)
        spatial = frame_conv(x, self.weight[:, :, k // 2], self.bias, 1, self.padding[1:])  # (B, C', T, H, W)
        if k == 1 or x.shape[2] == 1:
            return spatial
        video = super().forward(x * frames.keep(x))
        return torch.where(frames.image[:, None, :, None, None], spatial, video)


class ResBlock3D(nn.Module):
    """Spatial residual block conditioned on the embedding (scale/shift), then the temporal layer.

    ``temporal_conv``: "pseudo3d" adds a zero-initialised temporal conv after the block (modulated by the
    embedding with ``temporal_emb``); "full3d" makes the block's own convs (temporal_kernel, 3, 3); "none"
    keeps them per frame.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, temporal_kernel: int, dropout: float,
                 temporal_emb: bool = False, temporal_conv: str = "pseudo3d", temporal_conv_layers: int = 1):
        super().__init__()
        k = temporal_kernel if temporal_conv == "full3d" else 1
        kernel, pad = (k, *SPATIAL_3X3[1:]), (k // 2, *SPATIAL_PAD[1:])
        self.norm1 = group_norm(c_in)
        self.conv1 = SpaceTimeConv(c_in, c_out, kernel, padding=pad)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2 = group_norm(c_out)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = zero_init(SpaceTimeConv(c_out, c_out, kernel, padding=pad))
        self.skip = FrameConv(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.temporal_conv = self.temporal_emb = self.temporal_stack = None
        if temporal_conv == "pseudo3d":
            self.temporal_norm = group_norm(c_out)
            self.temporal_conv = zero_init(TemporalConv(c_out, temporal_kernel))
            self.temporal_emb = zero_init(nn.Linear(emb_dim, 2 * c_out)) if temporal_emb else None
            if temporal_conv_layers > 1:  # ModelScope's TemporalConvLayer: more (norm, SiLU, conv) layers first
                self.temporal_stack = nn.ModuleList(
                    nn.ModuleDict({"norm": group_norm(c_out), "conv": TemporalConv(c_out, temporal_kernel)})
                    for _ in range(temporal_conv_layers - 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: ImageFrames | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), frames)  # (B, C', T, H, W)
        scale, shift = self.emb(F.silu(emb))[:, :, None, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.skip(x) + self.conv2(self.dropout(F.silu(h)), frames)
        if h.shape[2] > 1 and self.temporal_conv is not None:  # images (T = 1) skip temporal layers
            keep = None if frames is None else frames.keep(h)  # image frames: unread, residual gated off
            g = h
            for layer in self.temporal_stack or ():
                g = layer["conv"](gated(F.silu(layer["norm"](g)), keep))
            g = self.temporal_norm(g)
            if self.temporal_emb is not None:
                scale_t, shift_t = self.temporal_emb(F.silu(emb))[:, :, None, None, None].chunk(2, dim=1)
                g = g * (1 + scale_t) + shift_t
            h = h + gated(self.temporal_conv(gated(F.silu(g), keep)), keep)
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
    """Attention at one level: space-time attention (``temporal_attention``: "divided" = spatial self-attention
    now, temporal self-attention after the cross-attention; "full" = one joint attention over T*H*W tokens;
    "none" = spatial only), cross-attention to the text per frame, optional GEGLU feed-forwards."""

    def __init__(self, dim: int, head_dim: int, text_dim: int, frame_position: str = "sinusoidal",
                 temporal_text: bool = False, spatial_position: str = "none", cross_position: str = "none",
                 temporal_attention: str = "divided", ff_mult: int = 0, cross_fourier_scale: float = 1.5):
        super().__init__()
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
            self.position = RelativePositionBias(heads)
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
        bias, keep = self.position(t), None
        if frames is not None:  # image frames: attend to themselves only, residuals gated off
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
        s = s + gated(self.temporal(q, mask=bias), keep)
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


class Level(nn.Module):
    """One resolution level of the encoder or decoder: residual blocks, each optionally with attention."""

    def __init__(self, c_ins: list[int], c_out: int, cfg: UNet3DConfig, emb_dim: int, attention: bool):
        super().__init__()
        self.res = nn.ModuleList(ResBlock3D(c, c_out, emb_dim, cfg.temporal_kernel, cfg.dropout, cfg.temporal_text,
                                            cfg.temporal_conv, cfg.temporal_conv_layers) for c in c_ins)
        self.attn = nn.ModuleList(
            SpaceTimeAttention(c_out, cfg.head_dim, cfg.text_dim, cfg.frame_position, cfg.temporal_text,
                               cfg.spatial_position, cfg.cross_position, cfg.temporal_attention, cfg.ff_mult,
                               cfg.cross_fourier_scale)
            if attention else nn.Identity() for _ in c_ins)


class UNet3D(nn.Module):
    """``model(x_t, t, cond) -> prediction`` (B, C_out, T, H, W); x_t (B, C, T, H, W), t (B,), cond a Condition (or
    its shorthand: a TextCondition, or None).

    ``cond.is_image`` (joint image-video training): a (B,) bool tensor marking samples whose T frames are
    independent images (one image repeated, or T single frames), or (B, T) marking single frames (VDM appends
    images to each clip). Temporal layers are the identity on them and video frames do not read them, so each image
    frame's output equals the model's output on that frame alone with T = 1.
    """

    def __init__(self, cfg: UNet3DConfig):
        super().__init__()
        self.cfg = cfg
        ch = cfg.channels
        emb_dim = 4 * ch[0]
        self.time_mlp = nn.Sequential(nn.Linear(ch[0], emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        self.text_to_emb = nn.Linear(cfg.text_dim, emb_dim) if cfg.text_dim else None
        self.conv_in = FrameConv(cfg.in_channels, ch[0], SPATIAL_3X3, padding=SPATIAL_PAD)

        skips = [ch[0]]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        c = ch[0]
        for i, c_out in enumerate(ch):
            ins = [c] + [c_out] * (cfg.blocks_per_level - 1)
            self.down.append(Level(ins, c_out, cfg, emb_dim, i in cfg.attention_levels))
            c = c_out
            skips += [c] * cfg.blocks_per_level
            if i < len(ch) - 1:
                self.downsample.append(FrameConv(c, c, SPATIAL_3X3, stride=(1, 2, 2), padding=SPATIAL_PAD))
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
                self.upsample.append(FrameConv(c, c, SPATIAL_3X3, padding=SPATIAL_PAD))
        self.norm_out = group_norm(c)
        self.conv_out = zero_init(FrameConv(c, cfg.out_channels, SPATIAL_3X3, padding=SPATIAL_PAD))

    def shard_units(self) -> list[nn.Module]:
        """The blocks ``forward`` calls one by one (residual and attention blocks of every level, in order): the
        units FSDP shards, gathering each one's weights just before it runs."""
        levels = [*self.down, self.mid, *self.up]
        return [m for level in levels for pair in zip(level.res, level.attn) for m in pair
                if not isinstance(m, nn.Identity)]

    def check_input(self, x: torch.Tensor, cond: Condition) -> None:
        if x.ndim != 5:
            raise ConstraintError(f"UNet3D expects (B, C, T, H, W) input, got shape {tuple(x.shape)}")
        b, c, t, h, w = x.shape
        if c != self.cfg.in_channels:
            raise ConstraintError(f"UNet3D expects {self.cfg.in_channels} input channels, got {c}")
        self.cfg.check_shape(t, h, w)
        check_conditioning(cond, self.cfg.text_dim, b, t)

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | TextCondition | None = None) -> torch.Tensor:
        cond = as_condition(cond)
        self.check_input(x, cond)
        text, frames = cond.text, image_frames(cond.is_image, x)
        emb = self.time_mlp(timestep_embedding(t, self.cfg.channels[0]).to(x.dtype))  # (B, E)
        if self.text_to_emb is not None and text is not None:
            emb = emb + self.text_to_emb(text.pooled)
        h = self.conv_in(x)  # (B, C0, T, H, W)
        skips = [h]
        for i, level in enumerate(self.down):
            for res, attn in zip(level.res, level.attn):
                h = self._block(res, attn, h, emb, text, frames)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)  # (B, C, T, H/2, W/2)
                skips.append(h)
        for res, attn in zip(self.mid.res, self.mid.attn):
            h = self._block(res, attn, h, emb, text, frames)
        for i, level in enumerate(self.up):
            for res, attn in zip(level.res, level.attn):
                h = self._block(res, attn, torch.cat([h, skips.pop()], dim=1), emb, text, frames)
            if i < len(self.upsample):
                # conv at the low resolution, then nearest upsampling: 4x fewer FLOPs than the reverse order
                h = F.interpolate(self.upsample[i](h), scale_factor=(1, 2, 2), mode="nearest")  # (B, C, T, 2H, 2W)
        return self.conv_out(F.silu(self.norm_out(h)))

    @staticmethod
    def _block(res, attn, h, emb, text, frames):
        h = res(h, emb, frames)
        return h if isinstance(attn, nn.Identity) else attn(h, text, frames)
