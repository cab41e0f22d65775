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
initialisation and on images; so with ``full`` attention, whose joint attention's output starts at zero (frames mix
once it trains). ``full3d`` convolutions mix frames inside the image layers themselves, so that holds only at T = 1
(an image sees the centre time taps). Joint image-video
batches mark image samples or frames with ``is_image``: temporal layers leave them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from vdmkit.backbones.layers import (
    FrameConv,
    ImageFrames,
    Linear,
    TemporalConv,
    check_conditioning,
    config_preset,
    frame_conv,
    group_norm,
    image_frames,
    nearest_multiple,
    timestep_embedding,
    zero_init,
)
from vdmkit.backbones.space_time import SpaceTimeAttention, gated, repeat_text
from vdmkit.backbones.transformer_blocks import MotionModule, SpatialTransformer, TemporalTransformer
from vdmkit.backbones.condition_inputs import ConditionInputs, check_condition, check_condition_inputs
from vdmkit.conditioning.condition import Condition, as_condition
from vdmkit.conditioning.text import TextCondition
from vdmkit.errors import ConfigError, ConstraintError

SPATIAL_3X3 = (1, 3, 3)
SPATIAL_PAD = (0, 1, 1)
FRAME_POSITIONS = ("sinusoidal", "none")
TEMPORAL_CONVS = ("pseudo3d", "full3d", "none")
TEMPORAL_ATTENTIONS = ("divided", "full", "none")
CROSS_POSITIONS = ("none", "sincos", "fourier")
ATTENTION_BLOCKS = ("space_time", "transformer")
TIME_EMBEDDINGS = ("scale_shift", "add")
TEMPORAL_NORMS = ("frame", "clip")
UPSAMPLES = ("conv_nearest", "nearest_conv")
TEMPORAL_POSITIONS = ("bias", "rope", "none")


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
    # how divided temporal attention (space_time block) knows frame offsets: "bias" (a learned per-head bias on the
    # offset, VDM; checkpoints before this option have it), "rope" (rotary positions on queries and keys: no additive
    # mask, so GPU flash kernels take the call) or "none" (the absolute frame_position features only)
    temporal_position: str = "bias"
    temporal_conv_layers: int = 1  # pseudo3d: (norm, SiLU, conv) layers, the last zero-init (ModelScope: 4)
    ff_mult: int = 0  # GEGLU feed-forward after the attentions, hidden = ff_mult * width (SD/ModelScope: 4); 0 = none
    # --- the layout of Stable Diffusion / ModelScope UNets (defaults: vdmkit's own), so their weights load ---
    # "space_time": vdmkit's attention (above); "transformer": SD's Transformer2DModel (per-frame GroupNorm,
    # projections around self-attention, cross-attention and a GEGLU feed-forward) and, with divided temporal
    # attention, ModelScope's temporal transformer (GroupNorm over the clip, two self-attentions over time, no
    # position information). Positions and temporal text are vdmkit options: none / false with "transformer"
    attention_block: str = "space_time"
    attention_heads: int = 0  # heads per attention layer at every level (SD 1.x: 8, ModelScope: 64); 0: width / head_dim
    time_embedding: str = "scale_shift"  # the residual blocks' timestep input: FiLM scale/shift, or SD's "add"
    norm_eps: float = 1e-6  # GroupNorm epsilon of the residual blocks, temporal convs and output (SD: 1e-5)
    norm_groups: int = 32  # GroupNorm groups (the largest count <= this dividing the width)
    temporal_norm: str = "frame"  # temporal convs' GroupNorm statistics: per "frame", or over the "clip" (ModelScope)
    upsample: str = "conv_nearest"  # decoder: 3x3 conv then 2x nearest (4x fewer FLOPs), or SD's "nearest_conv"
    mid_attentions: int = 2  # attention layers in the middle block: after both residual blocks, or 1 (SD)
    input_temporal_heads: int = 0  # > 0: a temporal transformer after conv_in, heads x head_dim wide (ModelScope: 8)
    pooled_text: bool = True  # the pooled prompt joins the timestep embedding (SD / ModelScope: false)
    temporal_on_images: bool = False  # run temporal layers on one-frame inputs too (ModelScope's maths; vdmkit
    # skips them, so that an image is the image model's output)
    # AnimateDiff motion modules (Guo et al. 2023; backbones.transformer_blocks.MotionModule): a temporal transformer
    # with sinusoidal frame positions and a zero-initialised output after every residual block (and its attention) of
    # every level, and after the middle block's attention with motion_mid; motion_heads heads of width / motion_heads
    # channels. 0 = none. They start as the identity, so an inflated image UNet is the image model on every frame
    motion_heads: int = 0
    motion_layers: int = 1  # transformer blocks per motion module
    motion_max_frames: int = 32  # frame positions the modules know: the most frames a clip may have
    motion_mid: bool = True  # a motion module in the middle block too (AnimateDiff v2 and later; v1 has none)
    # conditioned generation (backbones/condition_inputs.py): "frames" (known frames and their mask: image-to-video,
    # interpolation, prediction) and / or "low_res" (super-resolution), as zero-initialised extra input channels
    condition_inputs: tuple[str, ...] = ()

    def __post_init__(self):
        self.channels = tuple(int(c) for c in self.channels)
        self.condition_inputs = check_condition_inputs(self.condition_inputs)
        self.attention_levels = tuple(int(a) for a in self.attention_levels)
        if not self.channels or any(c <= 0 or (not self.attention_heads and c % self.head_dim) for c in self.channels):
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
                            ("cross_position", CROSS_POSITIONS), ("temporal_position", TEMPORAL_POSITIONS)):
            if getattr(self, name) not in valid:
                raise ConfigError(f"model.{name}={getattr(self, name)!r} unknown; valid: {', '.join(valid)}")
        odd = [c for c in self.channels if (c // self.heads(c)) % 2]
        if self.temporal_position == "rope" and odd:
            raise ConfigError(f"model.temporal_position=rope rotates channel pairs: the head width at channels {odd} "
                              "is odd; choose head_dim / attention_heads giving even head widths")
        if self.temporal_kernel % 2 != 1:
            raise ConfigError(f"model.temporal_kernel must be odd, got {self.temporal_kernel}")
        if self.temporal_conv_layers < 1:
            raise ConfigError(f"model.temporal_conv_layers must be >= 1, got {self.temporal_conv_layers}")
        if self.ff_mult < 0:
            raise ConfigError(f"model.ff_mult must be >= 0 (0 = no feed-forward), got {self.ff_mult}")
        self.position_in_cross = self.cross_position != "none"
        if not self.cross_fourier_scale > 0:
            raise ConfigError(f"model.cross_fourier_scale must be > 0, got {self.cross_fourier_scale}")
        self._check_layout()

    def _check_layout(self) -> None:
        for name, valid in (("attention_block", ATTENTION_BLOCKS), ("time_embedding", TIME_EMBEDDINGS),
                            ("temporal_norm", TEMPORAL_NORMS), ("upsample", UPSAMPLES)):
            if getattr(self, name) not in valid:
                raise ConfigError(f"model.{name}={getattr(self, name)!r} unknown; valid: {', '.join(valid)}")
        for name in ("attention_heads", "input_temporal_heads"):
            if getattr(self, name) < 0:
                raise ConfigError(f"model.{name} must be >= 0, got {getattr(self, name)}")
        bad = [c for c in self.channels if self.attention_heads and c % self.attention_heads]
        if bad:
            raise ConfigError(f"model.channels {bad} are not divisible by model.attention_heads={self.attention_heads}")
        if self.mid_attentions not in (1, 2):
            raise ConfigError(f"model.mid_attentions must be 1 or 2, got {self.mid_attentions}")
        if not self.norm_eps > 0 or self.norm_groups < 1:
            raise ConfigError(f"model.norm_eps must be > 0 and model.norm_groups >= 1, got {self.norm_eps}, "
                              f"{self.norm_groups}")
        if self.motion_heads < 0 or self.motion_layers < 1 or self.motion_max_frames < 1:
            raise ConfigError(f"model.motion_heads must be >= 0 (0 = no motion modules), model.motion_layers and "
                              f"model.motion_max_frames >= 1, got {self.motion_heads}, {self.motion_layers}, "
                              f"{self.motion_max_frames}")
        bad = [c for c in self.channels if self.motion_heads and (c % self.motion_heads or c % 2)]
        if bad:
            raise ConfigError(f"model.channels {bad} must be even and divisible by model.motion_heads="
                              f"{self.motion_heads} (each motion module has motion_heads heads of width / "
                              "motion_heads channels)")
        if self.attention_block == "transformer":
            vdmkit_only = {"temporal_attention": self.temporal_attention == "full", "temporal_text": self.temporal_text,
                           "frame_position": self.frame_position != "none",
                           "spatial_position": self.spatial_position != "none",
                           "cross_position": self.cross_position != "none",
                           "temporal_position": self.temporal_position == "rope"}
            bad = [k for k, on in vdmkit_only.items() if on]
            if bad:
                raise ConfigError(f"model.attention_block='transformer' (the SD / ModelScope layout) has no "
                                  f"{', '.join(bad)}: set {', '.join(bad)} to none / false / divided, or use "
                                  "attention_block='space_time'")
            if not self.ff_mult:
                raise ConfigError("model.attention_block='transformer' needs model.ff_mult > 0 (SD / ModelScope: 4)")

    def heads(self, width: int) -> int:
        """Attention heads at a level of ``width`` channels."""
        return self.attention_heads or width // self.head_dim

    @property
    def spatial_factor(self) -> int:
        """H and W must be divisible by this."""
        return 2 ** (len(self.channels) - 1)

    def check_shape(self, frames: int, height: int, width: int) -> None:
        """ConstraintError naming the nearest valid size if this UNet cannot take (frames, height, width)."""
        if self.motion_heads and frames > self.motion_max_frames:
            raise ConstraintError(f"this UNet's motion modules know {self.motion_max_frames} frame positions "
                                  f"(model.motion_max_frames), got {frames} frames: ask for at most "
                                  f"{self.motion_max_frames}")
        f = self.spatial_factor
        if height % f or width % f:
            raise ConstraintError(
                f"height and width must be divisible by {f} for this UNet, got {height}x{width}; "
                f"nearest valid: {nearest_multiple(height, f)}x{nearest_multiple(width, f)}")


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


# what diffusers' UNet3DConditionModel (ModelScope T2V) computes, as UNet3D options: SD's transformer blocks and
# additive timestep embeddings, ModelScope's clip-wide temporal norms, transformer_in and temporal layers that run on
# one-frame inputs too, nearest-then-conv upsampling, one attention in the middle block, no pooled text
MODELSCOPE_LAYOUT = dict(
    attention_block="transformer", time_embedding="add", temporal_norm="clip", upsample="nearest_conv",
    mid_attentions=1, input_temporal_heads=8, pooled_text=False, temporal_on_images=True, temporal_conv="pseudo3d",
    temporal_attention="divided", temporal_conv_layers=4, temporal_kernel=3, ff_mult=4, frame_position="none",
    spatial_position="none", temporal_text=False, cross_position="none", norm_eps=1e-5)

ModelScopeT2VConfig = config_preset(
    UNet3DConfig, "ModelScopeT2VConfig", "ModelScope text-to-video (Wang et al. 2023; diffusers' UNet3DConditionModel "
    "of text-to-video-ms-1.7b): 4 latent channels, levels (320, 640, 1280, 1280) with 2 blocks each, attention at the "
    "first three, 64-wide heads, 1024-wide text (OpenCLIP ViT-H), the layout of MODELSCOPE_LAYOUT: 1.41B parameters, "
    "diffusers' folders load into it (vdmkit.interop).", __name__,
    in_channels=4, out_channels=4, channels=(320, 640, 1280, 1280), blocks_per_level=2, attention_levels=(0, 1, 2),
    head_dim=64, text_dim=1024, **MODELSCOPE_LAYOUT)

# what diffusers' UNet2DConditionModel (Stable Diffusion 1.x / 2.x) computes on each frame, as UNet3D options, with no
# temporal layer of vdmkit's or ModelScope's: a Stable Diffusion image UNet inflated to video gets its time from
# AnimateDiff motion modules (motion_heads > 0), which run on one-frame inputs too (diffusers' UNetMotionModel)
SD_LAYOUT = dict(
    attention_block="transformer", time_embedding="add", upsample="nearest_conv", mid_attentions=1, pooled_text=False,
    temporal_on_images=True, temporal_conv="none", temporal_attention="none", ff_mult=4, frame_position="none",
    spatial_position="none", temporal_text=False, cross_position="none", norm_eps=1e-5)

AnimateDiffConfig = config_preset(
    UNet3DConfig, "AnimateDiffConfig", "AnimateDiff (Guo et al. 2023): Stable Diffusion 1.5's image UNet (levels (320, "
    "640, 1280, 1280), 2 blocks each, attention at the first three, 8 heads, 768-wide text: CLIP ViT-L/14) with "
    "motion modules of 8 heads after every block and in the middle block, at most 32 frames (AnimateDiff v2 / v3): "
    "diffusers' UNetMotionModel, 1.31B parameters; `vdmkit inflate` fills it from SD and MotionAdapter folders.",
    __name__, in_channels=4, out_channels=4, channels=(320, 640, 1280, 1280), blocks_per_level=2,
    attention_levels=(0, 1, 2), attention_heads=8, head_dim=40, text_dim=768, motion_heads=8, **SD_LAYOUT)


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
    """Spatial residual block conditioned on the embedding, then the temporal layer.

    The embedding enters as FiLM scale/shift after the second norm (``time_embedding: scale_shift``) or is added
    before it (SD's ``add``). ``temporal_conv``: "pseudo3d" adds a zero-initialised temporal conv after the block
    (modulated by the embedding with ``temporal_text``); "full3d" makes the block's own convs
    (temporal_kernel, 3, 3); "none" keeps them per frame.
    """

    def __init__(self, c_in: int, c_out: int, emb_dim: int, cfg: UNet3DConfig):
        super().__init__()
        k = cfg.temporal_kernel if cfg.temporal_conv == "full3d" else 1
        kernel, pad = (k, *SPATIAL_3X3[1:]), (k // 2, *SPATIAL_PAD[1:])
        groups, eps = cfg.norm_groups, cfg.norm_eps
        self.add_embedding = cfg.time_embedding == "add"
        self.temporal_on_images = cfg.temporal_on_images
        self.norm1 = group_norm(c_in, groups, eps)
        self.conv1 = SpaceTimeConv(c_in, c_out, kernel, padding=pad)
        self.emb = Linear(emb_dim, c_out if self.add_embedding else 2 * c_out)
        self.norm2 = group_norm(c_out, groups, eps)
        self.dropout = nn.Dropout(cfg.dropout)
        self.conv2 = zero_init(SpaceTimeConv(c_out, c_out, kernel, padding=pad))
        self.skip = FrameConv(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        self.temporal_conv = self.temporal_emb = self.temporal_stack = None
        if cfg.temporal_conv == "pseudo3d":
            per_frame = cfg.temporal_norm == "frame"
            self.temporal_norm = group_norm(c_out, groups, eps, per_frame)
            self.temporal_conv = zero_init(TemporalConv(c_out, cfg.temporal_kernel))
            self.temporal_emb = zero_init(Linear(emb_dim, 2 * c_out)) if cfg.temporal_text else None
            if cfg.temporal_conv_layers > 1:  # ModelScope's TemporalConvLayer: more (norm, SiLU, conv) layers first
                self.temporal_stack = nn.ModuleList(
                    nn.ModuleDict({"norm": group_norm(c_out, groups, eps, per_frame),
                                   "conv": TemporalConv(c_out, cfg.temporal_kernel)})
                    for _ in range(cfg.temporal_conv_layers - 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor, frames: ImageFrames | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), frames)  # (B, C', T, H, W)
        e = self.emb(F.silu(emb))[:, :, None, None, None]
        if self.add_embedding:
            h = self.norm2(h + e)
        else:
            scale, shift = e.chunk(2, dim=1)
            h = self.norm2(h) * (1 + scale) + shift
        h = self.skip(x) + self.conv2(self.dropout(F.silu(h)), frames)
        if (h.shape[2] > 1 or self.temporal_on_images) and self.temporal_conv is not None:  # images skip them
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


class TransformerAttention(nn.Module):
    """``attention_block: transformer``: SD's spatial transformer reading the prompt, then (divided temporal
    attention) ModelScope's temporal transformer."""

    def __init__(self, dim: int, cfg: UNet3DConfig):
        super().__init__()
        heads = cfg.heads(dim)
        self.spatial = SpatialTransformer(dim, heads, cfg.text_dim, cfg.ff_mult, cfg.norm_groups)
        self.temporal = (TemporalTransformer(dim, heads, dim // heads, cfg.ff_mult, cfg.norm_groups,
                                             cfg.temporal_on_images)
                         if cfg.temporal_attention == "divided" else None)

    def forward(self, x: torch.Tensor, text: TextCondition | None, frames: ImageFrames | None = None) -> torch.Tensor:
        context, mask = (None, None) if text is None else repeat_text(text, x.shape[2])  # one copy per frame
        x = self.spatial(x, context, mask)
        return x if self.temporal is None else self.temporal(x)



class Level(nn.Module):
    """One resolution level of the encoder or decoder: residual blocks, each optionally with attention and a motion
    module after it (``motions``: the first n blocks have one; None: every block, if the config has them)."""

    def __init__(self, c_ins: list[int], c_out: int, cfg: UNet3DConfig, emb_dim: int, attention: bool,
                 attentions: int | None = None, motions: int | None = None):
        super().__init__()
        self.res = nn.ModuleList(ResBlock3D(c, c_out, emb_dim, cfg) for c in c_ins)
        n = len(c_ins) if attentions is None else attentions  # the first n blocks have attention after them
        self.attn = nn.ModuleList(attention_layer(c_out, cfg) if attention and i < n else nn.Identity()
                                  for i in range(len(c_ins)))
        m = len(c_ins) if motions is None else motions
        self.motion = nn.ModuleList(
            MotionModule(c_out, cfg.motion_heads, cfg.motion_layers, cfg.motion_max_frames, cfg.norm_groups)
            if cfg.motion_heads and i < m else nn.Identity() for i in range(len(c_ins)))

    def blocks(self):
        """(residual block, attention, motion module) of each block; nn.Identity where a block has none."""
        return zip(self.res, self.attn, self.motion)


def attention_layer(dim: int, cfg: UNet3DConfig) -> nn.Module:
    if cfg.attention_block == "transformer":
        return TransformerAttention(dim, cfg)
    return SpaceTimeAttention(dim, dim // cfg.heads(dim), cfg.text_dim, cfg.frame_position, cfg.temporal_text,
                              cfg.spatial_position, cfg.cross_position, cfg.temporal_attention, cfg.ff_mult,
                              cfg.cross_fourier_scale, cfg.temporal_position)


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
        self.time_mlp = nn.Sequential(Linear(ch[0], emb_dim), nn.SiLU(), Linear(emb_dim, emb_dim))
        self.text_to_emb = Linear(cfg.text_dim, emb_dim) if cfg.text_dim and cfg.pooled_text else None
        self.conv_in = FrameConv(cfg.in_channels, ch[0], SPATIAL_3X3, padding=SPATIAL_PAD)
        self.condition_in = None
        if cfg.condition_inputs:  # extra input channels, summed with conv_in's output; zero at init
            self.condition_in = ConditionInputs(cfg.in_channels, cfg.condition_inputs, emb_dim,
                                                lambda c: FrameConv(c, ch[0], SPATIAL_3X3, padding=SPATIAL_PAD))
        self.input_temporal = None
        if cfg.input_temporal_heads:  # ModelScope's transformer_in
            self.input_temporal = TemporalTransformer(ch[0], cfg.input_temporal_heads, cfg.head_dim, cfg.ff_mult,
                                                      cfg.norm_groups, cfg.temporal_on_images)

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
        self.mid = Level([c, c], c, cfg, emb_dim, attention=True, attentions=cfg.mid_attentions,
                         motions=cfg.mid_attentions if cfg.motion_mid else 0)  # after each middle attention
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, c_out in reversed(list(enumerate(ch))):
            ins = []
            for _ in range(cfg.blocks_per_level + 1):
                ins.append(c + skips.pop())
                c = c_out
            self.up.append(Level(ins, c_out, cfg, emb_dim, i in cfg.attention_levels))
            if i > 0:
                self.upsample.append(FrameConv(c, c, SPATIAL_3X3, padding=SPATIAL_PAD))
        self.norm_out = group_norm(c, cfg.norm_groups, cfg.norm_eps)
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
        check_condition(cond, self.cfg.condition_inputs, tuple(x.shape), "this UNet")
        clip_wide = self.cfg.temporal_norm == "clip" or self.cfg.attention_block == "transformer"
        if cond.is_image is not None and t > 1 and (clip_wide or self.cfg.motion_heads):
            raise ConstraintError("joint image-video masks (is_image) need temporal layers that keep frames apart: "
                                  "this UNet normalises over the whole clip (temporal_norm='clip', the SD / "
                                  "ModelScope transformer layout or motion modules), so an image frame would change "
                                  "the video frames")

    def forward(self, x: torch.Tensor, t: torch.Tensor, cond: Condition | TextCondition | None = None) -> torch.Tensor:
        cond = as_condition(cond)
        self.check_input(x, cond)
        text, frames = cond.text, image_frames(cond.is_image, x)
        emb = self.time_mlp(timestep_embedding(t, self.cfg.channels[0]).to(x.dtype))  # (B, E)
        if self.text_to_emb is not None and text is not None:
            emb = emb + self.text_to_emb(text.pooled)
        h = self.conv_in(x)  # (B, C0, T, H, W)
        if self.condition_in is not None:  # [known * mask, mask, upsampled low-res] and their noise level
            h = h + self.condition_in(x, cond)
            emb = emb + self.condition_in.embedding(cond, x.shape[0], emb)
        if self.input_temporal is not None:
            h = self.input_temporal(h)
        skips = [h]
        for i, level in enumerate(self.down):
            for block in level.blocks():
                h = self._block(*block, h, emb, text, frames)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)  # (B, C, T, H/2, W/2)
                skips.append(h)
        for block in self.mid.blocks():
            h = self._block(*block, h, emb, text, frames)
        for i, level in enumerate(self.up):
            for block in level.blocks():
                h = self._block(*block, torch.cat([h, skips.pop()], dim=1), emb, text, frames)
            if i < len(self.upsample):
                h = self._upsample(self.upsample[i], h)  # (B, C, T, 2H, 2W)
        # in the standard layout: the frame convolutions leave channels-last frames, and a sampler's arithmetic would
        # carry that layout into the next call's input
        return self.conv_out(F.silu(self.norm_out(h))).contiguous()

    def _upsample(self, conv: FrameConv, h: torch.Tensor) -> torch.Tensor:
        def double(z):
            return F.interpolate(z, scale_factor=(1, 2, 2), mode="nearest")
        if self.cfg.upsample == "nearest_conv":  # SD's order
            return conv(double(h))
        return double(conv(h))  # conv at the low resolution: 4x fewer FLOPs, a different function

    @staticmethod
    def _block(res, attn, motion, h, emb, text, frames):
        h = res(h, emb, frames)
        if not isinstance(attn, nn.Identity):
            h = attn(h, text, frames)
        return h if isinstance(motion, nn.Identity) else motion(h)
