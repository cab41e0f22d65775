"""The causal video VAE: 3D causal convolutions that compress time as well as space.

The shape follows the causal VAEs of CogVideoX and Open-Sora-Plan: the first frame is encoded alone and
every later group of ``temporal_compression`` frames becomes one latent frame, so a clip of
``T = 1 + k * temporal_compression`` frames has ``1 + k`` latent frames and an image (T=1) is one latent
frame. Convolutions are causal in time (padded on the past side only, with copies of the first frame),
and normalisation and attention work per frame, so nothing looks at future frames: a clip decoded in
chunks of latent frames, carrying each convolution's last inputs across chunks, equals the clip decoded
at once.

Time is compressed by averaging pairs of frames (after the first) before a level's spatial stride-2
convolution, and expanded by repeating frames before the decoder's causal convolutions mix them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdmkit.autoencoders.common import Autoencoder, SpatialAttention, check_frame_chunk
from vdmkit.autoencoders.frame_vae import Level, check_common
from vdmkit.errors import ConfigError, ConstraintError

Cache = dict  # module -> state carried between chunks of frames (last inputs of a causal conv; "seen" flags)


@dataclass
class VideoVAEConfig:
    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # each but the last halves H and W
    temporal_downsample: tuple[bool, ...] = (True, False)  # per downsampling step: also halve time?
    layers_per_block: int = 1
    latent_channels: int = 4
    norm_num_groups: int = 8
    temporal_kernel: int = 3
    mid_attention: bool = True
    scaling_factor: float = 1.0
    shift_factor: float = 0.0

    def __post_init__(self):
        self.block_out_channels = tuple(self.block_out_channels)
        self.temporal_downsample = tuple(bool(t) for t in self.temporal_downsample)
        check_common(self)
        if len(self.temporal_downsample) != len(self.block_out_channels) - 1:
            raise ConfigError(f"temporal_downsample needs one flag per downsampling step "
                              f"({len(self.block_out_channels) - 1}), got {len(self.temporal_downsample)}")
        if self.temporal_kernel < 1:
            raise ConfigError(f"temporal_kernel must be >= 1, got {self.temporal_kernel}")

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    @property
    def temporal_compression(self) -> int:
        return 2 ** sum(self.temporal_downsample)


def _per_frame(fn, x: torch.Tensor) -> torch.Tensor:
    t = x.shape[2]
    y = fn(rearrange(x, "b c t h w -> (b t) c h w"))
    return rearrange(y, "(b t) c h w -> b c t h w", t=t).contiguous()


class CausalConv3d(nn.Module):
    """``k x 3 x 3`` convolution padded in time with ``k - 1`` past frames: copies of the first frame at the
    start of a video, the previous chunk's last inputs when a cache is passed."""

    def __init__(self, cin: int, cout: int, temporal_kernel: int = 3, spatial_kernel: int = 3):
        super().__init__()
        self.pad = temporal_kernel - 1
        self.conv = nn.Conv3d(cin, cout, (temporal_kernel, spatial_kernel, spatial_kernel),
                              padding=(0, spatial_kernel // 2, spatial_kernel // 2))

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        if self.pad:
            past = cache.get(self) if cache is not None else None
            if past is None:
                past = x[:, :, :1].expand(-1, -1, self.pad, -1, -1)
            x = torch.cat([past, x], dim=2)
            if cache is not None:
                cache[self] = x[:, :, -self.pad:].clone()
        return self.conv(x)


class FrameNorm(nn.GroupNorm):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _per_frame(super().forward, x)


class ResnetBlock3D(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int, kt: int):
        super().__init__()
        self.norm1 = FrameNorm(groups, cin, eps=1e-6)
        self.conv1 = CausalConv3d(cin, cout, kt)
        self.norm2 = FrameNorm(groups, cout, eps=1e-6)
        self.conv2 = CausalConv3d(cout, cout, kt)
        self.conv_shortcut = nn.Conv3d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)), cache)
        h = self.conv2(F.silu(self.norm2(h)), cache)
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


def _first_chunk(module: nn.Module, cache: Cache | None) -> bool:
    """True on the chunk that holds the video's first frame (always, without a cache)."""
    if cache is None:
        return True
    first = module not in cache
    cache[module] = True
    return first


class Downsample3D(nn.Module):
    """Optionally halve time (first frame alone, then the mean of each pair), then halve H and W."""

    def __init__(self, channels: int, temporal: bool):
        super().__init__()
        self.temporal = temporal
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        if self.temporal:
            first = _first_chunk(self, cache)
            head, rest = (x[:, :, :1], x[:, :, 1:]) if first else (x[:, :, :0], x)
            b, c, t, h, w = rest.shape
            if t % 2:
                raise ConstraintError(f"temporal downsampling got {t} frames after the first; needs an even count")
            rest = rest.reshape(b, c, t // 2, 2, h, w).mean(3)
            x = torch.cat([head, rest], dim=2)
        return _per_frame(lambda y: self.conv(F.pad(y, (0, 1, 0, 1))), x)


class Upsample3D(nn.Module):
    """Optionally double time (first frame alone, every later frame repeated), then double H and W."""

    def __init__(self, channels: int, temporal: bool, kt: int):
        super().__init__()
        self.temporal = temporal
        self.conv = CausalConv3d(channels, channels, kt)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        if self.temporal:
            first = _first_chunk(self, cache)
            head, rest = (x[:, :, :1], x[:, :, 1:]) if first else (x[:, :, :0], x)
            x = torch.cat([head, rest.repeat_interleave(2, dim=2)], dim=2)
        x = _per_frame(lambda y: F.interpolate(y, scale_factor=2.0, mode="nearest"), x)
        return self.conv(x, cache)


class MidBlock3D(nn.Module):
    def __init__(self, channels: int, groups: int, kt: int, attention: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock3D(channels, channels, groups, kt),
                                      ResnetBlock3D(channels, channels, groups, kt)])
        self.attentions = nn.ModuleList([SpatialAttention(channels, groups)]) if attention else None

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        x = self.resnets[0](x, cache)
        if self.attentions is not None:
            x = _per_frame(self.attentions[0], x)
        return self.resnets[1](x, cache)


class Encoder3D(nn.Module):
    def __init__(self, cfg: VideoVAEConfig):
        super().__init__()
        ch, g, kt = cfg.block_out_channels, cfg.norm_num_groups, cfg.temporal_kernel
        self.conv_in = CausalConv3d(cfg.in_channels, ch[0], kt)
        blocks, cin = [], ch[0]
        for i, cout in enumerate(ch):
            resnets = [ResnetBlock3D(cin if j == 0 else cout, cout, g, kt) for j in range(cfg.layers_per_block)]
            down = Downsample3D(cout, cfg.temporal_downsample[i]) if i < len(ch) - 1 else None
            blocks.append(Level(resnets, down, "downsamplers"))
            cin = cout
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock3D(ch[-1], g, kt, cfg.mid_attention)
        self.conv_norm_out = FrameNorm(g, ch[-1], eps=1e-6)
        self.conv_out = CausalConv3d(ch[-1], 2 * cfg.latent_channels, kt)

    def forward(self, x: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        x = self.conv_in(x, cache)
        for block in self.down_blocks:
            x = block(x, cache)
        x = self.mid_block(x, cache)
        return self.conv_out(F.silu(self.conv_norm_out(x)), cache)


class Decoder3D(nn.Module):
    def __init__(self, cfg: VideoVAEConfig):
        super().__init__()
        ch, g, kt = tuple(reversed(cfg.block_out_channels)), cfg.norm_num_groups, cfg.temporal_kernel
        temporal_up = tuple(reversed(cfg.temporal_downsample))
        self.conv_in = CausalConv3d(cfg.latent_channels, ch[0], kt)
        self.mid_block = MidBlock3D(ch[0], g, kt, cfg.mid_attention)
        blocks, cin = [], ch[0]
        for i, cout in enumerate(ch):
            resnets = [ResnetBlock3D(cin if j == 0 else cout, cout, g, kt) for j in range(cfg.layers_per_block + 1)]
            up = Upsample3D(cout, temporal_up[i], kt) if i < len(ch) - 1 else None
            blocks.append(Level(resnets, up, "upsamplers"))
            cin = cout
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = FrameNorm(g, ch[-1], eps=1e-6)
        self.conv_out = CausalConv3d(ch[-1], cfg.out_channels, kt)

    def forward(self, z: torch.Tensor, cache: Cache | None = None) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z, cache), cache)
        for block in self.up_blocks:
            x = block(x, cache)
        return self.conv_out(F.silu(self.conv_norm_out(x)), cache)


class VideoVAE(Autoencoder):
    """Causal video VAE: ``(B, 3, 1 + k*ft, H, W)`` <-> ``(B, latent_channels, 1 + k, H/s, W/s)``."""

    kind = "video_vae"

    def __init__(self, cfg: VideoVAEConfig | None = None):
        cfg = cfg or VideoVAEConfig()
        super().__init__(cfg)
        self.temporal_compression = 2 ** sum(cfg.temporal_downsample)
        self.encoder = Encoder3D(cfg)
        self.decoder = Decoder3D(cfg)
        c2 = 2 * cfg.latent_channels
        self.quant_conv = nn.Conv3d(c2, c2, 1)
        self.post_quant_conv = nn.Conv3d(cfg.latent_channels, cfg.latent_channels, 1)

    def valid_frames(self, frames: int) -> bool:
        return frames >= 1 and (frames - 1) % self.temporal_compression == 0

    def latent_frames(self, frames: int) -> int:
        return 1 + (frames - 1) // self.temporal_compression

    def pixel_frames(self, latent_frames: int) -> int:
        return 1 + (latent_frames - 1) * self.temporal_compression

    def frame_rule(self) -> str:
        f = self.temporal_compression
        return f"1 + k * {f} frames (1, {1 + f}, {1 + 2 * f}, {1 + 3 * f}, ...)" if f > 1 else "any number of frames"

    def _run(self, fn, x: torch.Tensor, frame_chunk: int | None, unit: int) -> torch.Tensor:
        """``fn(x, cache)`` on the first frame alone, then on chunks of ``frame_chunk`` frames, carrying state."""
        check_frame_chunk(frame_chunk, unit)
        if frame_chunk is None or x.shape[2] <= 1 + frame_chunk:
            return fn(x, None)
        cache: Cache = {}
        pieces = [fn(x[:, :, :1], cache)]
        for i in range(1, x.shape[2], frame_chunk):
            pieces.append(fn(x[:, :, i:i + frame_chunk], cache))
        return torch.cat(pieces, dim=2)

    def _encode_chunked(self, x: torch.Tensor, frame_chunk: int | None) -> torch.Tensor:
        """``frame_chunk`` counts pixel frames after the first; a multiple of the temporal compression."""
        return self._run(lambda v, c: self.quant_conv(self.encoder(v, c)), x, frame_chunk, self.temporal_compression)

    def _decode_chunked(self, z: torch.Tensor, frame_chunk: int | None) -> torch.Tensor:
        """``frame_chunk`` counts latent frames after the first."""
        return self._run(lambda v, c: self.decoder(self.post_quant_conv(v), c), z, frame_chunk, 1)


def inflate_frame_vae(video: VideoVAE, frame_state: dict[str, torch.Tensor]) -> int:
    """Initialise ``video`` from a frame VAE's weights (the same channels, levels and latent channels).

    Each 2D convolution becomes the causal 3D convolution that applies it to the current frame only (its
    kernel sits at the last temporal tap, the others are zero), so before any training the video VAE is
    the frame VAE on every frame, except that time is averaged in pairs and repeated on the way back:
    fine-tuning then only has to learn the temporal compression (as CogVideoX and Open-Sora-Plan start
    their causal VAEs from an image VAE). Returns the number of tensors copied.
    """
    from vdmkit.errors import CheckpointMismatchError

    own = video.state_dict()
    new, missing, bad = {}, [], []
    for key, target in own.items():
        source_key = key if key in frame_state else None
        if source_key is None and key.endswith((".conv.weight", ".conv.bias")):
            stripped = key[: key.rindex(".conv.")] + key[key.rindex(".conv.") + len(".conv"):]
            source_key = stripped if stripped in frame_state else None
        if source_key is None:
            missing.append(key)
            continue
        w = frame_state[source_key]
        if target.ndim == 5 and w.ndim == 4:  # (O, I, h, w) -> (O, I, kt, h, w), current frame only
            inflated = torch.zeros_like(target)
            if inflated.shape[:2] + inflated.shape[3:] != w.shape:
                bad.append(f"{key}: {tuple(w.shape)} vs {tuple(target.shape)}")
                continue
            inflated[:, :, -1] = w
            w = inflated
        if w.shape != target.shape:
            bad.append(f"{key}: {tuple(w.shape)} vs {tuple(target.shape)}")
            continue
        new[key] = w
    if missing or bad:
        raise CheckpointMismatchError(f"the frame VAE does not fit this video VAE (same block_out_channels, "
                                      f"layers_per_block, latent_channels and norm groups needed): missing "
                                      f"{missing[:4]}, shape mismatch {bad[:4]}")
    video.load_state_dict(new)
    return len(new)
