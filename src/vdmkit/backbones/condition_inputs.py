"""The conditioned backbones' extra inputs, by channel concatenation (SVD, I2VGen-XL, Emu Video; Imagen Video's
super-resolution stages): ``[x_t, known * mask, mask]`` for known frames, ``[x_t, upsampled low_res]`` for
super-resolution, and the conditioning's noise level added to the timestep embedding.

``model.condition_inputs`` lists what a backbone takes: ``frames`` (C + 1 channels) and / or ``low_res`` (C
channels). The extra channels enter through their own zero-initialised projection summed with the first layer's
(a conv beside ``conv_in`` in the UNet, a patch embedding beside the DiT's): the same function as one wider first
layer whose new input weights start at zero, and the noise-level embedding starts at zero too, so a text-to-video
checkpoint loaded into a conditioned model (``train.init_from``) computes exactly what it did until fine-tuning
moves them. A model given conditioning it was not built for refuses it, by a typed error.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from vdmkit.backbones.layers import Linear, timestep_embedding, zero_init
from vdmkit.conditioning.condition import Condition
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.video import fold_time, unfold_time

CONDITION_INPUTS = ("frames", "low_res")
NOISE_FEATURES = 256  # sinusoidal features of the conditioning's noise level (x 1000, as a timestep)
NOISE_SCALE = 1000.0


def check_condition_inputs(inputs) -> tuple[str, ...]:
    """``model.condition_inputs`` as a tuple; ConfigError on unknown or repeated names."""
    inputs = tuple(inputs)
    bad = [i for i in inputs if i not in CONDITION_INPUTS]
    if bad or len(set(inputs)) != len(inputs):
        raise ConfigError(f"model.condition_inputs must list distinct names among {', '.join(CONDITION_INPUTS)}, "
                          f"got {list(inputs)}")
    return inputs


def condition_channels(in_channels: int, inputs: tuple[str, ...]) -> int:
    """How many channels the conditioning adds to x_t's ``in_channels``."""
    return ("frames" in inputs) * (in_channels + 1) + ("low_res" in inputs) * in_channels


def per_pixel_mask(mask: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """A (B, T) or (B, 1, T, H, W) mask -> (B, 1, T, H, W) float for a batch of ``shape`` (B, C, T, H, W)."""
    b, _, t, h, w = shape
    if mask.ndim == 2:
        return mask[:, None, :, None, None].float().expand(b, 1, t, h, w)
    return mask.float()


def check_condition(cond: Condition, inputs: tuple[str, ...], shape: tuple[int, ...], model: str) -> None:
    """ConstraintError unless the conditioning fields of ``cond`` are ones this backbone takes, shaped for x_t of
    ``shape`` (B, C, T, H, W)."""
    b, c, t, h, w = shape
    takes = f"{model} was built with model.condition_inputs={list(inputs)}"
    frames = cond.known is not None or cond.mask is not None
    if frames and "frames" not in inputs:
        raise ConstraintError(f"known frames given, but {takes}: it cannot take them. Use a model trained with "
                              "data.condition masks, or condition_mode='replace' (training-free, any model)")
    if cond.low_res is not None and "low_res" not in inputs:
        raise ConstraintError(f"a low-resolution video given, but {takes}: use a super-resolution model "
                              "(data.condition.low_res > 1)")
    if cond.noise_level is not None and not inputs:
        raise ConstraintError(f"a conditioning noise level given, but {takes}: it takes no conditioning")
    if frames:
        if cond.known is None or cond.mask is None:
            raise ConstraintError("known frames need both cond.known (B, C, T, H, W) and cond.mask ((B, T) or "
                                  "(B, 1, T, H, W)); one was given without the other")
        if tuple(cond.known.shape) != tuple(shape):
            raise ConstraintError(f"cond.known has shape {tuple(cond.known.shape)}; x_t is {tuple(shape)}")
        if tuple(cond.mask.shape) not in ((b, t), (b, 1, t, h, w)):
            raise ConstraintError(f"cond.mask must be ({b}, {t}) per frame or ({b}, 1, {t}, {h}, {w}), got "
                                  f"{tuple(cond.mask.shape)}")
    if cond.low_res is not None:
        lr = tuple(cond.low_res.shape)
        if len(lr) != 5 or lr[:3] != (b, c, t) or lr[3] > h or lr[4] > w:
            raise ConstraintError(f"cond.low_res must be ({b}, {c}, {t}, h, w) with h <= {h} and w <= {w} (it is "
                                  f"upsampled to x_t's size), got {lr}")
    if cond.noise_level is not None and tuple(cond.noise_level.shape) != (b,):
        raise ConstraintError(f"cond.noise_level must have shape ({b},), got {tuple(cond.noise_level.shape)}")


def upsample(low_res: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, C, T, h, w) -> (B, C, T, H, W), bicubic per frame (the identity at the same size)."""
    if tuple(low_res.shape[3:]) == tuple(size):
        return low_res
    big = F.interpolate(fold_time(low_res), size=size, mode="bicubic", align_corners=False)  # (B T, C, H, W)
    return unfold_time(big, low_res.shape[2])


class ConditionInputs(nn.Module):
    """The conditioning channels of a backbone through ``proj`` (built by ``make_proj(channels)`` like the
    backbone's first layer: its output is added to that layer's) and the embedding of their noise level, both
    zero at init."""

    def __init__(self, in_channels: int, inputs: tuple[str, ...], emb_dim: int, make_proj: Callable[[int], nn.Module]):
        super().__init__()
        self.in_channels, self.inputs = in_channels, inputs
        self.channels = condition_channels(in_channels, inputs)
        self.proj = zero_init(make_proj(self.channels))
        self.noise_mlp = zero_init(Linear(NOISE_FEATURES, emb_dim))

    def forward(self, x: torch.Tensor, cond: Condition) -> torch.Tensor:
        """What the conditioning adds to the first layer's output for x_t ``x``."""
        return self.proj(self.tensor(x, cond))

    def tensor(self, x: torch.Tensor, cond: Condition) -> torch.Tensor:
        """(B, channels, T, H, W) in x's dtype: [known * mask, mask] and / or the upsampled low-res video; zeros for
        what is not given (a dropped condition, as in training)."""
        parts = []
        if "frames" in self.inputs:
            if cond.known is None:
                parts.append(x.new_zeros(x.shape[0], self.in_channels + 1, *x.shape[2:]))
            else:
                mask = per_pixel_mask(cond.mask, x.shape).to(x)
                parts += [cond.known.to(x) * mask, mask]
        if "low_res" in self.inputs:
            parts.append(x.new_zeros(x.shape) if cond.low_res is None
                         else upsample(cond.low_res.to(x), tuple(x.shape[3:])))
        return torch.cat(parts, dim=1)

    def embedding(self, cond: Condition, batch: int, like: torch.Tensor) -> torch.Tensor:
        """(B, emb_dim): the noise level's embedding (level 0 when none is given)."""
        level = cond.noise_level if cond.noise_level is not None else like.new_zeros(batch)
        features = timestep_embedding(level.to(like.device).float() * NOISE_SCALE, NOISE_FEATURES)
        return self.noise_mlp(features.to(like.dtype))
