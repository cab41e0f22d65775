"""The frame VAE: Stable Diffusion's AutoencoderKL, applied to each frame (time folded into the batch).

Module and parameter names follow diffusers' ``AutoencoderKL``, so a diffusers folder
(``config.json`` + ``diffusion_pytorch_model.safetensors``) loads with ``FrameVAE.from_diffusers``; the
SD 1.x/2.x VAE is ``FrameVAEConfig.sd()``. Spatial compression is ``2 ** (len(block_out_channels) - 1)``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vdmkit.autoencoders.common import Autoencoder, SpatialAttention, check_frame_chunk
from vdmkit.backbones.layers import PlaneGroupNorm
from vdmkit.errors import ConfigError
from vdmkit.io.checkpoint import folder_config, folder_weights, load_strict, load_tensors


@dataclass
class FrameVAEConfig:
    in_channels: int = 3
    out_channels: int = 3
    block_out_channels: tuple[int, ...] = (32, 64, 64)  # one level per entry; each but the last halves H, W
    layers_per_block: int = 1  # resnets per encoder level (the decoder has one more, as in SD)
    latent_channels: int = 4
    norm_num_groups: int = 8
    mid_attention: bool = True
    use_quant_conv: bool = True
    use_post_quant_conv: bool = True
    scaling_factor: float = 1.0  # set from data after training: 1 / std of the latents
    shift_factor: float = 0.0  # set from data after training: mean of the latents

    def __post_init__(self):
        self.block_out_channels = tuple(self.block_out_channels)
        check_common(self)

    @property
    def spatial_compression(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    temporal_compression = 1

    @classmethod
    def sd(cls) -> "FrameVAEConfig":
        """Stable Diffusion 1.x/2.x's VAE: 8x spatial compression, 4 latent channels, 83.7M parameters."""
        return cls(block_out_channels=(128, 256, 512, 512), layers_per_block=2, norm_num_groups=32,
                   scaling_factor=0.18215)


def check_common(cfg) -> None:
    """Checks both autoencoder configs share."""
    if not cfg.block_out_channels or any(c < 1 for c in cfg.block_out_channels):
        raise ConfigError(f"block_out_channels must be positive, got {cfg.block_out_channels}")
    if isinstance(cfg.norm_num_groups, bool) or not isinstance(cfg.norm_num_groups, int) or cfg.norm_num_groups < 1:
        raise ConfigError(f"norm_num_groups must be an integer >= 1, got {cfg.norm_num_groups!r}")  # 0: ZeroDivision
    bad = [c for c in cfg.block_out_channels if c % cfg.norm_num_groups]
    if bad:
        raise ConfigError(f"every block_out_channels entry must be divisible by norm_num_groups="
                          f"{cfg.norm_num_groups}; {bad} are not")
    for name in ("in_channels", "out_channels", "latent_channels", "layers_per_block"):
        value = getattr(cfg, name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:  # "2" was a raw TypeError
            raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
    if not cfg.scaling_factor > 0:
        raise ConfigError(f"scaling_factor must be > 0, got {cfg.scaling_factor}")


class ResnetBlock2D(nn.Module):
    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = PlaneGroupNorm(groups, cin, eps=1e-6)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.norm2 = PlaneGroupNorm(groups, cout, eps=1e-6)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.conv_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return (x if self.conv_shortcut is None else self.conv_shortcut(x)) + h


class Downsample2D(nn.Module):
    """Stride-2 3x3 convolution after padding one pixel right and bottom (SD's asymmetric padding)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample2D(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One encoder/decoder level: resnets, then an optional resampler (diffusers' Down/UpDecoderBlock2D).

    Extra forward arguments (the causal video VAE's chunk cache) go to every resnet and the resampler.
    """

    def __init__(self, resnets: list[nn.Module], sampler: nn.Module | None, attr: str):
        super().__init__()
        self.resnets = nn.ModuleList(resnets)
        if sampler is not None:
            setattr(self, attr, nn.ModuleList([sampler]))
        self._attr = attr if sampler is not None else None

    def forward(self, x: torch.Tensor, *args) -> torch.Tensor:
        for resnet in self.resnets:
            x = resnet(x, *args)
        return getattr(self, self._attr)[0](x, *args) if self._attr else x


class MidBlock2D(nn.Module):
    def __init__(self, channels: int, groups: int, attention: bool):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock2D(channels, channels, groups), ResnetBlock2D(channels, channels, groups)])
        self.attentions = nn.ModuleList([SpatialAttention(channels, groups)]) if attention else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.resnets[0](x)
        if self.attentions is not None:
            x = self.attentions[0](x)
        return self.resnets[1](x)


class Encoder2D(nn.Module):
    def __init__(self, cfg: FrameVAEConfig):
        super().__init__()
        ch, g = cfg.block_out_channels, cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.in_channels, ch[0], 3, padding=1)
        blocks, cin = [], ch[0]
        for i, cout in enumerate(ch):
            resnets = [ResnetBlock2D(cin if j == 0 else cout, cout, g) for j in range(cfg.layers_per_block)]
            blocks.append(Level(resnets, Downsample2D(cout) if i < len(ch) - 1 else None, "downsamplers"))
            cin = cout
        self.down_blocks = nn.ModuleList(blocks)
        self.mid_block = MidBlock2D(ch[-1], g, cfg.mid_attention)
        self.conv_norm_out = PlaneGroupNorm(g, ch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[-1], 2 * cfg.latent_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for block in self.down_blocks:
            x = block(x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder2D(nn.Module):
    def __init__(self, cfg: FrameVAEConfig):
        super().__init__()
        ch, g = tuple(reversed(cfg.block_out_channels)), cfg.norm_num_groups
        self.conv_in = nn.Conv2d(cfg.latent_channels, ch[0], 3, padding=1)
        self.mid_block = MidBlock2D(ch[0], g, cfg.mid_attention)
        blocks, cin = [], ch[0]
        for i, cout in enumerate(ch):
            resnets = [ResnetBlock2D(cin if j == 0 else cout, cout, g) for j in range(cfg.layers_per_block + 1)]
            blocks.append(Level(resnets, Upsample2D(cout) if i < len(ch) - 1 else None, "upsamplers"))
            cin = cout
        self.up_blocks = nn.ModuleList(blocks)
        self.conv_norm_out = PlaneGroupNorm(g, ch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[-1], cfg.out_channels, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.mid_block(self.conv_in(z))
        for block in self.up_blocks:
            x = block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"


class FrameVAE(Autoencoder):
    """SD AutoencoderKL per frame: ``(B, 3, T, H, W)`` <-> ``(B, latent_channels, T, H/s, W/s)``."""

    kind = "frame_vae"
    temporal_compression = 1

    def __init__(self, cfg: FrameVAEConfig | None = None):
        cfg = cfg or FrameVAEConfig()
        super().__init__(cfg)
        self.encoder = Encoder2D(cfg)
        self.decoder = Decoder2D(cfg)
        c2 = 2 * cfg.latent_channels
        self.quant_conv = nn.Conv2d(c2, c2, 1) if cfg.use_quant_conv else None
        self.post_quant_conv = nn.Conv2d(cfg.latent_channels, cfg.latent_channels, 1) if cfg.use_post_quant_conv else None

    # The 2D networks run channels-last (NHWC), the layout oneDNN's and cuDNN's convolutions prefer: SD's VAE on 4
    # frames of 256 x 256 on this 2-core CPU decodes in 1.8 s instead of 5.0 (bf16) and 8.2 instead of 9.3 (fp32),
    # and encodes in 1.0 instead of 2.6 (bf16). Results come back in the standard (contiguous) layout.

    def encode_frames(self, x: torch.Tensor) -> torch.Tensor:
        """Images (N, C, H, W) -> moments (N, 2 * latent_channels, H/s, W/s)."""
        m = self.encoder(x.contiguous(memory_format=torch.channels_last))
        return (self.quant_conv(m) if self.quant_conv is not None else m).contiguous()

    def decode_frames(self, z: torch.Tensor) -> torch.Tensor:
        z = z.contiguous(memory_format=torch.channels_last)
        if self.post_quant_conv is not None:
            z = self.post_quant_conv(z)
        return self.decoder(z).contiguous()

    def _per_frame(self, fn, x: torch.Tensor, frame_chunk: int | None) -> torch.Tensor:
        check_frame_chunk(frame_chunk)
        t = x.shape[2]
        flat = rearrange(x, "b c t h w -> (b t) c h w")
        step = frame_chunk or flat.shape[0]
        y = torch.cat([fn(flat[i:i + step]) for i in range(0, flat.shape[0], step)])
        return rearrange(y, "(b t) c h w -> b c t h w", t=t)

    def _encode_chunked(self, x: torch.Tensor, frame_chunk: int | None) -> torch.Tensor:
        return self._per_frame(self.encode_frames, x, frame_chunk)

    def _decode_chunked(self, z: torch.Tensor, frame_chunk: int | None) -> torch.Tensor:
        return self._per_frame(self.decode_frames, z, frame_chunk)

    @classmethod
    def from_diffusers(cls, folder: str | os.PathLike) -> "FrameVAE":
        """Load a diffusers ``AutoencoderKL`` folder (config.json + diffusion_pytorch_model.safetensors)."""
        folder = Path(folder)
        if folder.is_dir() and (folder / "vae" / "config.json").is_file():
            folder = folder / "vae"  # a whole pipeline folder: take its VAE
        raw = folder_config(folder, "diffusers AutoencoderKL")
        weights = folder_weights(folder, DIFFUSERS_WEIGHTS)
        cfg = config_from_diffusers(raw, str(folder / "config.json"))
        model = cls(cfg)
        load_strict(model, convert_legacy_attention(load_tensors(weights)), weights)
        return model.eval()


def config_from_diffusers(raw: dict, source: str = "the AutoencoderKL config") -> FrameVAEConfig:
    """The frame VAE config of a diffusers AutoencoderKL ``config.json`` (``raw``; ``source`` names it in errors)."""
    if raw.get("_class_name", "AutoencoderKL") != "AutoencoderKL":
        raise ConfigError(f"expected an AutoencoderKL config, got {raw.get('_class_name')!r}")
    for key, want in [("down_block_types", "DownEncoderBlock2D"), ("up_block_types", "UpDecoderBlock2D")]:
        if any(b != want for b in raw.get(key, [want])):
            raise ConfigError(f"{key}={raw[key]} is not supported (only {want})")
    if raw.get("act_fn", "silu") != "silu":
        raise ConfigError(f"act_fn={raw['act_fn']!r} is not supported (only silu)")
    if "scaling_factor" in raw and raw["scaling_factor"] is None:
        # diffusers loads a null as it is and its pipelines then divide the latents by None (a TypeError): no
        # default applies, and which factor the latents were trained with is unknown
        raise ConfigError(f"{source}: scaling_factor is null; set it to the number the VAE's latents are scaled by "
                          "(0.18215 for Stable Diffusion 1.x/2.x's VAE), or remove the key for diffusers' default "
                          "0.18215")
    for key in ("scaling_factor", "shift_factor"):  # used at sampling only: a bad one failed there, untyped
        value = raw.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise ConfigError(f"{source}: {key} must be a finite number, got {value!r}")
    return FrameVAEConfig(
        in_channels=raw.get("in_channels", 3), out_channels=raw.get("out_channels", 3),
        block_out_channels=tuple(raw.get("block_out_channels", (64,))), layers_per_block=raw.get("layers_per_block", 1),
        latent_channels=raw.get("latent_channels", 4), norm_num_groups=raw.get("norm_num_groups", 32),
        mid_attention=raw.get("mid_block_add_attention", True), use_quant_conv=raw.get("use_quant_conv", True),
        use_post_quant_conv=raw.get("use_post_quant_conv", True),
        scaling_factor=raw.get("scaling_factor", 0.18215), shift_factor=raw.get("shift_factor") or 0.0)


def convert_legacy_attention(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Older SD VAE files name the mid-block attention query/key/value/proj_attn (sometimes as 1x1 convs)."""
    names = {"query": "to_q", "key": "to_k", "value": "to_v", "proj_attn": "to_out.0"}
    out = {}
    for k, v in state.items():
        parts = k.split(".")
        if "attentions" in parts and len(parts) >= 2 and parts[-2] in names:
            k = ".".join(parts[:-2] + [names[parts[-2]], parts[-1]])
        if "attentions" in k and k.endswith(".weight") and v.ndim == 4 and "group_norm" not in k:
            v = v[:, :, 0, 0]
        out[k] = v
    return out


def replace_factors(cfg, scaling_factor: float, shift_factor: float):
    return dataclasses.replace(cfg, scaling_factor=float(scaling_factor), shift_factor=float(shift_factor))
