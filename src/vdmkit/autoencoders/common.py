"""What both autoencoders share: the Gaussian posterior, the latent scaling contract, checks, and tiling.

An autoencoder maps pixel videos ``(B, 3, T, H, W)`` in [-1, 1] to latents
``(B, latent_channels, T', H / spatial_compression, W / spatial_compression)`` and back. Diffusion sees
*scaled* latents ``(z - shift_factor) * scaling_factor`` (unit variance on the training data), which
``encode_latents`` / ``decode_latents`` apply; ``encode`` / ``decode`` work on raw latents, as in diffusers.

Memory: ``decode_latents(z, tile=..., frame_chunk=..., batch_chunk=...)`` decodes spatial tiles with
linear blending over their overlap, chunks of frames, and slices of the batch, so peak memory follows the
chunk, not the video. Frame chunks are exact (frames are independent in the frame VAE; the causal video
VAE carries its convolution state across chunks); spatial tiles are an approximation at the seams.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vdmkit.backbones.layers import PlaneGroupNorm, nearest_multiple
from vdmkit.device import randn
from vdmkit.errors import ConstraintError, NonFiniteError



def refuse_non_finite(x: torch.Tensor, what: str) -> None:
    """NonFiniteError when the sampled ``what`` (latents, or a pixel model's pixels) hold NaN or inf before decoding:
    no black video is ever written (a clamp passed NaN through and made inf 1)."""
    bad = ~torch.isfinite(x)
    if bad.any():
        raise NonFiniteError(f"{what} hold {int(bad.sum())} non-finite values (of {x.numel()}) before decoding; "
                             "the sampler diverged: try fp32, fewer guidance or another sampler")

class DiagonalGaussian:
    """The encoder's posterior N(mean, exp(logvar)); logvar clamped to [-30, 20] (as SD's VAE)."""

    def __init__(self, moments: torch.Tensor):
        self.mean, logvar = moments.chunk(2, dim=1)
        self.logvar = logvar.clamp(-30.0, 20.0)
        self.std = torch.exp(0.5 * self.logvar)

    def sample(self, generator: torch.Generator | None = None) -> torch.Tensor:
        noise = randn(self.mean.shape, generator, self.mean.device, self.mean.dtype)  # drawn where the generator is
        return self.mean + self.std * noise

    def mode(self) -> torch.Tensor:
        return self.mean

    def kl(self) -> torch.Tensor:
        """KL(q || N(0, I)) per sample, summed over every latent element: shape (B,)."""
        return 0.5 * (self.mean.square() + self.logvar.exp() - 1.0 - self.logvar).flatten(1).sum(1)


class SpatialAttention(nn.Module):
    """Single-head self-attention over the pixels of each frame, residual (SD VAE's mid-block attention).

    Parameter names match diffusers' ``Attention`` as used in AutoencoderKL (group_norm, to_q, to_k,
    to_v, to_out.0), so its weights load as they are.
    """

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.group_norm = PlaneGroupNorm(groups, channels, eps=1e-6)
        self.to_q = nn.Linear(channels, channels)
        self.to_k = nn.Linear(channels, channels)
        self.to_v = nn.Linear(channels, channels)
        self.to_out = nn.ModuleList([nn.Linear(channels, channels)])

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (N, C, H, W)
        n, c, h, w = x.shape
        y = self.group_norm(x).flatten(2).transpose(1, 2)  # (N, HW, C)
        q, k, v = self.to_q(y), self.to_k(y), self.to_v(y)
        y = F.scaled_dot_product_attention(q[:, None], k[:, None], v[:, None])[:, 0]
        y = self.to_out[0](y).transpose(1, 2).reshape(n, c, h, w)
        return x + y


DECODE_PIXELS = 1 << 22  # 4M output pixels (16 frames of 512x512) decoded at once by default; more in frame chunks
DECODE_OVERLAP = 2  # latent pixels two neighbouring decode tiles share (blended): a tile must be larger


class Autoencoder(nn.Module):
    """Base class: the latent contract, input checks and memory-bounded encode/decode.

    Subclasses set ``spatial_compression``, ``temporal_compression``, ``latent_channels`` and implement
    ``_encode_chunked(x, frame_chunk)`` -> moments and ``_decode_chunked(z, frame_chunk)`` -> pixels.
    """

    kind = "autoencoder"
    spatial_compression: int
    temporal_compression: int
    latent_channels: int

    def __init__(self, cfg):
        """The contract's attributes from a config with in_channels, latent_channels, block_out_channels (each level
        after the first halves H and W), scaling_factor and shift_factor."""
        super().__init__()
        self.cfg = cfg
        self.scaling_factor = float(cfg.scaling_factor)
        self.shift_factor = float(cfg.shift_factor)
        self.in_channels = cfg.in_channels
        self.latent_channels = cfg.latent_channels
        self.spatial_compression = 2 ** (len(cfg.block_out_channels) - 1)

    # --- the frame-count and size rules ------------------------------------------------------------
    def valid_frames(self, frames: int) -> bool:
        """True when ``frames`` pixel frames can be encoded (any count for the frame VAE)."""
        return frames >= 1

    def latent_frames(self, frames: int) -> int:
        return frames

    def pixel_frames(self, latent_frames: int) -> int:
        return latent_frames

    def frame_rule(self) -> str:
        return "any number of frames"

    def check_pixels(self, x: torch.Tensor) -> None:
        if not torch.is_tensor(x) or x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ConstraintError(f"expected a video (B, {self.in_channels}, T, H, W), got "
                                  f"{tuple(x.shape) if torch.is_tensor(x) else type(x).__name__}")
        _check_floating(x, "video", "; 8-bit pixels: scale them to [-1, 1] first (x / 127.5 - 1)")
        _check_not_empty(x, "video (B, C, T, H, W)")
        self.check_size(x.shape[2], x.shape[3], x.shape[4])

    def check_size(self, frames: int, height: int, width: int) -> None:
        s = self.spatial_compression
        if height % s or width % s or height < s or width < s:
            near = [nearest_multiple(v, s) for v in (height, width)]
            raise ConstraintError(f"{self.kind}: height and width must be positive multiples of the spatial "
                                  f"compression {s}, got {height}x{width}; nearest valid: {near[0]}x{near[1]}")
        if not self.valid_frames(frames):
            raise ConstraintError(f"{self.kind}: cannot take {frames} frames: it needs {self.frame_rule()}; nearest "
                                  f"valid: {' or '.join(map(str, nearest_frames(frames, self.temporal_compression)))}")

    def check_latents(self, z: torch.Tensor) -> None:
        if not torch.is_tensor(z) or z.ndim != 5 or z.shape[1] != self.latent_channels:
            raise ConstraintError(f"expected latents (B, {self.latent_channels}, T, h, w), got "
                                  f"{tuple(z.shape) if torch.is_tensor(z) else type(z).__name__}")
        _check_floating(z, "latents", "")
        _check_not_empty(z, "latents (B, C, T, h, w)")

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        self.check_size(frames, height, width)
        s = self.spatial_compression
        return (self.latent_channels, self.latent_frames(frames), height // s, width // s)

    # --- raw encode / decode -------------------------------------------------------------------------
    def encode(self, x: torch.Tensor, *, tile: int | None = None, overlap: int = 8, frame_chunk: int | None = None,
               batch_chunk: int | None = None) -> DiagonalGaussian:
        """Pixels -> posterior over raw latents. ``tile``/``overlap`` in pixels. Float pixels of another type than
        the weights' are cast to it."""
        self.check_pixels(x)
        x = x.to(self.weight_dtype())
        moments = _over_batch(x, batch_chunk, lambda xb: _tiled(
            lambda t: self._encode_chunked(t, frame_chunk), xb, tile, overlap, 1 / self.spatial_compression))
        return DiagonalGaussian(moments)

    def decode(self, z: torch.Tensor, *, tile: int | None = None, overlap: int = DECODE_OVERLAP,
               frame_chunk: int | None = None, batch_chunk: int | None = None) -> torch.Tensor:
        """Raw latents -> pixels. ``tile``/``overlap`` in latent pixels; ``frame_chunk`` in latent frames. Float
        latents of another type than the weights' are cast to it."""
        self.check_latents(z)
        z = z.to(self.weight_dtype())
        return _over_batch(z, batch_chunk, lambda zb: _tiled(
            lambda t: self._decode_chunked(t, frame_chunk), zb, tile, overlap, self.spatial_compression))

    # --- what diffusion sees ---------------------------------------------------------------------------
    def encode_latents(self, x: torch.Tensor, *, sample: bool = False, generator: torch.Generator | None = None,
                       **memory) -> torch.Tensor:
        """Pixels in [-1, 1] -> scaled float32 latents (the posterior's mode, or a sample of it)."""
        self.check_pixels(x)
        _warn_untiled(memory.get("tile"), x.shape[-2:], "pixels")
        posterior = self.encode(x, **memory)  # weights stored in bf16 / fp16 encode in that type
        z = posterior.sample(generator) if sample else posterior.mode()
        return (z.float() - self.shift_factor) * self.scaling_factor

    def decode_latents(self, z: torch.Tensor, **memory) -> torch.Tensor:
        """Scaled latents -> pixels in [-1, 1]. Non-finite latents abort: no black video is ever written."""
        self.check_latents(z)
        refuse_non_finite(z, "latents")
        if "frame_chunk" not in memory and "tile" not in memory:
            memory["frame_chunk"] = self.default_frame_chunk(z)
        _warn_untiled(memory.get("tile"), z.shape[-2:], "latent pixels")
        x = self.decode(z / self.scaling_factor + self.shift_factor, **memory)  # in the weights' type (bf16, fp16)
        return x.float().clamp(-1.0, 1.0)

    def weight_dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    def default_frame_chunk(self, z: torch.Tensor) -> int | None:
        """Latent frames decoded at a time when none is asked for: all of them up to DECODE_PIXELS output pixels
        per video, then chunks of that size (exact: frames decode independently, or causally with state)."""
        pixels = z.shape[-2] * z.shape[-1] * self.spatial_compression ** 2 * self.temporal_compression
        chunk = max(1, DECODE_PIXELS // pixels)
        return None if chunk >= z.shape[2] else chunk

    def _encode_chunked(self, x: torch.Tensor, frame_chunk: int | None) -> torch.Tensor:
        raise NotImplementedError

    def _decode_chunked(self, z: torch.Tensor, frame_chunk: int | None) -> torch.Tensor:
        raise NotImplementedError


def _check_not_empty(x: torch.Tensor, what: str) -> None:
    """ConstraintError when a batch, frame, height or width axis is empty (a zero chunk step or a division by zero
    deep inside the networks otherwise)."""
    empty = [name for name, n in zip("BTHW", (x.shape[0], *x.shape[2:])) if n < 1]
    if empty:
        raise ConstraintError(f"the {what} has shape {tuple(x.shape)}: its {', '.join(empty)} must be >= 1; give at "
                              "least one video of at least one frame and one pixel")


def _check_floating(x: torch.Tensor, what: str, advice: str) -> None:
    """ConstraintError for integer or bool tensors (a raw torch error inside the first convolution otherwise)."""
    if not x.is_floating_point():
        raise ConstraintError(f"the {what} tensor is {str(x.dtype).removeprefix('torch.')}: the autoencoder takes "
                              f"floating-point values{advice}")


def _warn_untiled(tile: int | None, size, unit: str) -> None:
    """Warn when the tile asked for covers the whole frame: nothing is tiled, and the memory is not lowered."""
    h, w = size
    if isinstance(tile, int) and not isinstance(tile, bool) and h <= tile and w <= tile:
        warnings.warn(f"tile={tile} ({unit}) covers the whole {h}x{w} frame, so nothing is tiled and the memory stays "
                      f"as without it: give a tile smaller than {max(h, w)} to lower it",
                      stacklevel=3)


def nearest_frames(frames: int, temporal: int) -> list[int]:
    """The valid frame counts (1 + k * ``temporal``) nearest ``frames``: the one below and the one above."""
    if frames <= 1:
        return [1]
    below = 1 + (frames - 1) // temporal * temporal
    return [below] if below == frames else [below, below + temporal]


def compressed_shape(spatial: int, temporal: int, frames: int, height: int, width: int,
                     origin: str = "") -> tuple[int, int, int]:
    """(frames, height, width) of the latents of a pixel clip; ConstraintError when the clip does not fit.
    ``origin``: where the frame count came from, named in the error (e.g. " (data.lengths=[5, 8])").

    Works from the compressions alone (an autoencoder config's properties), so configs and sampling requests
    are checked without building the network.
    """
    if height % spatial or width % spatial:
        near = [nearest_multiple(v, spatial) for v in (height, width)]
        raise ConstraintError(f"size {height}x{width} is not divisible by the spatial compression {spatial}; nearest "
                              f"valid: {near[0]}x{near[1]}")
    if (frames - 1) % temporal:
        raise ConstraintError(f"frames={frames}{origin} does not fit the temporal compression {temporal}: "
                              f"use 1 + k * {temporal} frames (nearest valid: "
                              f"{' or '.join(map(str, nearest_frames(frames, temporal)))})")
    return 1 + (frames - 1) // temporal, height // spatial, width // spatial


def _over_batch(x: torch.Tensor, batch_chunk: int | None, fn: Callable) -> torch.Tensor:
    if batch_chunk is not None and (isinstance(batch_chunk, bool) or not isinstance(batch_chunk, int)
                                    or batch_chunk < 1):  # -1 was a raw torch.cat error, 0 meant no chunks
        raise ConstraintError(f"batch_chunk must be a positive whole number of videos (or None: the whole batch), got "
                              f"{batch_chunk!r}")
    if batch_chunk is None or batch_chunk >= x.shape[0]:
        return fn(x)
    return torch.cat([fn(x[i:i + batch_chunk]) for i in range(0, x.shape[0], batch_chunk)])


def _ramp(n: int, overlap_in: int, scale: float, at_start: bool, at_end: bool) -> torch.Tensor:
    """Blend weights along one axis of an output tile: linear ramps over the overlap, 1 elsewhere."""
    ramp = max(1, round(overlap_in * scale))
    w = torch.ones(n)
    steps = (torch.arange(ramp) + 0.5) / ramp
    if not at_start:
        w[:ramp] = torch.minimum(w[:ramp], steps)
    if not at_end:
        w[n - ramp:] = torch.minimum(w[n - ramp:], steps.flip(0))
    return w


def _starts(size: int, tile: int, overlap: int) -> list[int]:
    if size <= tile:
        return [0]
    stride = tile - overlap
    starts = list(range(0, size - tile, stride)) + [size - tile]
    return sorted(set(starts))


def _tiled(fn: Callable, x: torch.Tensor, tile: int | None, overlap: int, scale: float) -> torch.Tensor:
    """Apply ``fn`` (which scales H and W by ``scale``) to overlapping spatial tiles and blend the outputs.

    Each output pixel is the weighted mean of the tiles covering it, with weights that fall linearly to
    zero across the overlap (and stay 1 at the video's borders).
    """
    h, w = x.shape[-2:]
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ConstraintError(f"tile must be a positive whole number of pixels (or None: no tiling), got {tile!r}")
    if tile is None or (h <= tile and w <= tile):
        return fn(x)
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ConstraintError(f"overlap must be a whole number of pixels >= 0, got {overlap!r}")
    if overlap >= tile:  # no stride left between tiles; the overlap is a default the caller may never have set
        raise ConstraintError(f"tile={tile} must be larger than overlap={overlap} (the pixels neighbouring tiles "
                              f"share): give tile > {overlap}, or a smaller overlap")
    unit = round(1 / scale) if scale < 1 else 1  # tiles must stay whole multiples of the compression
    if tile % unit or overlap % unit:
        raise ConstraintError(f"tile ({tile}) and overlap ({overlap}) must be multiples of the compression {unit}")
    out = weight = None
    for top in _starts(h, tile, overlap):
        for left in _starts(w, tile, overlap):
            piece = fn(x[..., top:top + tile, left:left + tile])
            th, tw = piece.shape[-2:]
            wy = _ramp(th, overlap, scale, top == 0, top + tile >= h)
            wx = _ramp(tw, overlap, scale, left == 0, left + tile >= w)
            wt = (wy[:, None] * wx[None, :]).to(device=piece.device, dtype=piece.dtype)  # meta in the estimates
            if out is None:
                shape = (*piece.shape[:-2], round(h * scale), round(w * scale))
                out = piece.new_zeros(shape)
                weight = piece.new_zeros(shape[-2:])
            oy, ox = round(top * scale), round(left * scale)
            out[..., oy:oy + th, ox:ox + tw] += piece * wt
            weight[oy:oy + th, ox:ox + tw] += wt
    return out / weight


def check_frame_chunk(frame_chunk: int | None, unit: int = 1) -> None:
    if frame_chunk is not None and (isinstance(frame_chunk, bool) or not isinstance(frame_chunk, int)
                                    or frame_chunk < 1 or frame_chunk % unit):
        raise ConstraintError(f"frame_chunk must be a positive multiple of {unit}, got {frame_chunk!r}")


def largest_groups(channels: int, groups: int) -> int:
    return math.gcd(channels, groups)
