"""The tensor contract.

A video is a float tensor ``(B, C, T, H, W)`` with values in ``[-1, 1]`` in pixel space. An image is a
video with ``T = 1``. uint8 ``(T, H, W, C)`` arrays appear only at file IO.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange

from vdmkit.errors import InvalidVideoError

VIDEO_AXES = "(B, C, T, H, W)"


def check_video(
    x: torch.Tensor,
    *,
    channels: int | tuple[int, ...] | None = None,
    value_range: tuple[float, float] | None = (-1.0, 1.0),
    name: str = "video",
    atol: float = 1e-3,
) -> torch.Tensor:
    """Validate ``x`` against the video contract and return it unchanged.

    Raises :class:`InvalidVideoError` saying what is wrong and how to fix it. ``channels``: the channel count
    axis 1 must have, or the counts it may have. ``value_range=None`` skips the range check (latents are unbounded).
    """
    if not isinstance(x, torch.Tensor):
        raise InvalidVideoError(f"{name} must be a torch.Tensor {VIDEO_AXES}, got {type(x).__name__}")
    if x.device.type == "meta":
        raise InvalidVideoError(f"{name} is on the meta device: it has a shape but no values; give a real tensor")
    if x.ndim != 5:
        hint = ""
        if x.ndim == 4:
            hint = " (for one video add a batch axis with x[None]; for images add T with x[:, :, None])"
        raise InvalidVideoError(f"{name} must have 5 axes {VIDEO_AXES}, got shape {tuple(x.shape)}{hint}")
    if not x.is_floating_point():
        raise InvalidVideoError(
            f"{name} must be floating point, got {x.dtype}; convert uint8 frames with from_uint8()"
        )
    if any(s == 0 for s in x.shape):
        raise InvalidVideoError(f"{name} has an empty axis: shape {tuple(x.shape)} {VIDEO_AXES}")
    allowed = (channels,) if isinstance(channels, int) else channels
    if allowed is not None and x.shape[1] not in allowed:
        raise InvalidVideoError(
            f"{name} must have {' or '.join(map(str, allowed))} channels on axis 1 {VIDEO_AXES}, got shape "
            f"{tuple(x.shape)}; is the channel axis last? use x.permute(0, 4, 1, 2, 3) for (B, T, H, W, C)"
        )
    values = x  # an expanded tensor repeats its values along its stride-0 axes: check one copy of them
    for dim in range(x.ndim):
        if x.stride(dim) == 0:
            values = values.narrow(dim, 0, 1)
    if not torch.isfinite(values).all():
        raise InvalidVideoError(f"{name} contains NaN or inf values")
    if value_range is not None:
        lo, hi = value_range
        xmin, xmax = float(values.min()), float(values.max())
        if xmin < lo - atol or xmax > hi + atol:
            hint = " (it looks like [0, 255]: use from_uint8())" if xmax > 2 else ""
            hint = hint or (" (it looks like [0, 1]: use x * 2 - 1)" if xmin >= 0 and lo < 0 else "")
            raise InvalidVideoError(f"{name} values must lie in [{lo}, {hi}], got [{xmin:.3g}, {xmax:.3g}]{hint}")
    return x


def fold_time(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, T, H, W) -> (B*T, C, H, W)``: apply a per-frame (image) module to every frame."""
    return rearrange(x, "b c t h w -> (b t) c h w")


def unfold_time(x: torch.Tensor, frames: int) -> torch.Tensor:
    """``(B*T, C, H, W) -> (B, C, T, H, W)``: the inverse of :func:`fold_time`."""
    return rearrange(x, "(b t) c h w -> b c t h w", t=frames)


def resize_cover(clip: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """A clip ``(C, T, H, W)`` or ``(T, C, H, W)`` in [-1, 1] -> ``(C, T, height, width)`` (or ``(T, C, ...)``):
    scaled to cover ``height x width`` without distortion (bilinear, antialias, align_corners=False),
    centre-cropped, clamped to [-1, 1]. Each ``H x W`` plane is resized on its own, so the axis order does
    not change a value; a clip already ``height x width`` comes back unchanged."""
    h, w = clip.shape[-2:]
    if (h, w) == (height, width):
        return clip
    s = max(height / h, width / w)
    nh, nw = max(height, round(h * s)), max(width, round(w * s))
    x = F.interpolate(clip, size=(nh, nw), mode="bilinear", antialias=True, align_corners=False)
    top, left = (nh - height) // 2, (nw - width) // 2
    return x[..., top:top + height, left:left + width].clamp(-1, 1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """``(C, T, H, W)`` or ``(1, C, T, H, W)`` float in [-1, 1] -> uint8 ``(T, H, W, C)`` for file IO."""
    if x.ndim == 5:
        if x.shape[0] != 1:
            raise InvalidVideoError(f"to_uint8 takes one video, got a batch of {x.shape[0]}; index it first")
        x = x[0]
    if x.ndim != 4:
        raise InvalidVideoError(f"to_uint8 expects (C, T, H, W), got shape {tuple(x.shape)}")
    if not torch.isfinite(x).all():
        raise InvalidVideoError("refusing to convert a video containing NaN or inf to uint8")
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return rearrange(x, "c t h w -> t h w c").cpu().numpy()


def from_uint8(frames: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 ``(T, H, W, C)`` -> float ``(1, C, T, H, W)`` in [-1, 1]."""
    if isinstance(frames, np.ndarray) and min(frames.strides, default=0) < 0:  # a flipped or BGR->RGB view
        frames = np.ascontiguousarray(frames)  # (frames[..., ::-1]): torch takes no negative strides
    frames = torch.as_tensor(frames)
    if frames.dtype != torch.uint8 or frames.ndim != 4:
        raise InvalidVideoError(f"from_uint8 expects uint8 (T, H, W, C), got {frames.dtype} {tuple(frames.shape)}")
    # one float32 tensor of the video's size, converted into in place: the expression's temporaries and its
    # rearranged copy held two to four (0.3 GiB of uint8 peaked at 2.6 GiB, before any memory check could refuse it)
    x = torch.empty((1, frames.shape[3], *frames.shape[:3]), dtype=torch.float32, device=frames.device)
    x.copy_(rearrange(frames, "t h w c -> 1 c t h w"))
    return x.div_(127.5).sub_(1.0)
