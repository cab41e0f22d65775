"""What a conditioned model is trained on: ``data.condition`` in a run config, the mask of known frames drawn per
sample, condition dropout for two-scale guidance, and noise augmentation of the conditioning.

One model trained with a mix of masks (VDT, Lu et al. 2023) does image-to-video (the first frame known: PixelDance,
Emu Video, SVD), interpolation (keyframes every n-th frame: LaVie, Show-1) and prediction / extension (the first k
frames). A super-resolution model (``low_res``: Imagen Video, LaVie, Show-1) is conditioned on the clip downsampled by
``low_res`` and upsampled back by the backbone. The image condition is dropped with ``drop_image`` and the text with
the run's ``train.cond_dropout``, independently, so the model learns all four of (image, text), (image, -),
(-, text), (-, -): what two-scale guidance (InstructPix2Pix, SVD) combines. ``noise_aug`` draws each sample's
conditioning noise level uniformly in [0, noise_aug] (the model is told the level; sample with a small one).

Every draw is a pure function of (seed, step, the sample's position in the global batch), so the masks survive a
resume and any split of the batch over processes or micro-batches unchanged.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from vdmkit.conditioning.condition import Condition
from vdmkit.errors import ConfigError, ConstraintError
from vdmkit.video import fold_time, unfold_time

MASKS = ("first_frame", "first_k", "keyframes", "every_n", "none")
MAX_NOISE_LEVEL = 0.99  # a level of 1 would leave nothing of the conditioning


@dataclass
class ConditionConfig:
    """``masks``: the weight of each mask kind (normalised; e.g. {first_frame: 2, every_n: 1, first_k: 1}).
    ``first_k``: prediction knows the first k frames, k uniform in 1..first_k. ``keyframes``: 2..keyframes frames at
    random positions, the first and last always among them. ``every_n``: frames 0, n, 2n, ... known, n drawn from this
    list. ``low_res``: > 1 trains super-resolution from the clip downsampled this many times (area), alone or with
    masks; with ``residual`` the model generates the clip minus the bicubic upsampling of its clean low-res input
    (SRDiff, Li et al. 2022: a clean background is then zero). ``drop_image``: probability of dropping the image
    condition (mask and known frames zero; the low-res video
    too). ``noise_aug``: the largest conditioning noise level drawn in training."""

    masks: dict = field(default_factory=lambda: {"first_frame": 1.0})
    first_k: int = 4
    keyframes: int = 4
    every_n: tuple[int, ...] = (2, 4)
    low_res: int = 1
    residual: bool = False
    drop_image: float = 0.1
    noise_aug: float = 0.0

    def __post_init__(self):
        if not isinstance(self.masks, dict):
            raise ConfigError(f"data.condition.masks must be a mapping of mask kind to weight, got {self.masks!r}")
        bad = [k for k in self.masks if k not in MASKS]
        if bad:
            raise ConfigError(f"data.condition.masks: unknown kind(s) {bad}; valid: {', '.join(MASKS)}")
        for kind, weight in self.masks.items():
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) \
                    or weight < 0:
                raise ConfigError(f"data.condition.masks.{kind} must be a weight >= 0, got {weight!r}")
        self.masks = {k: float(v) for k, v in self.masks.items()}
        if self.low_res < 1:
            raise ConfigError(f"data.condition.low_res must be an integer >= 1 (1: no super-resolution), "
                              f"got {self.low_res!r}")
        if self.residual and self.low_res == 1:
            raise ConfigError("data.condition.residual applies to super-resolution: set low_res > 1")
        if not any(self.masks.values()) and self.low_res == 1:
            raise ConfigError("data.condition conditions on nothing: give a mask kind a weight > 0 "
                              f"({', '.join(MASKS[:-1])}) or low_res > 1")
        for name in ("first_k", "keyframes"):
            if getattr(self, name) < {"first_k": 1, "keyframes": 2}[name]:
                raise ConfigError(f"data.condition.{name} must be >= {1 if name == 'first_k' else 2}, "
                                  f"got {getattr(self, name)!r}")
        self.every_n = tuple(int(n) for n in self.every_n)
        if not self.every_n or any(n < 2 for n in self.every_n):
            raise ConfigError(f"data.condition.every_n must list strides >= 2, got {self.every_n!r}")
        for name in ("drop_image", "noise_aug"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_NOISE_LEVEL:
                raise ConfigError(f"data.condition.{name} must be a number in [0, {MAX_NOISE_LEVEL}], got {value!r}")

    @property
    def inputs(self) -> tuple[str, ...]:
        """The backbone inputs these draws feed (``model.condition_inputs``)."""
        frames = any(w > 0 for k, w in self.masks.items() if k != "none")
        return ("frames",) * frames + ("low_res",) * (self.low_res > 1)


def frame_mask(kind: str, frames: int, generator: torch.Generator, cfg: ConditionConfig) -> torch.Tensor:
    """(frames,) float, 1 on the known frames of one sample for the mask ``kind``."""
    mask = torch.zeros(frames)
    if kind == "first_frame":
        mask[0] = 1
    elif kind == "first_k":
        k = int(torch.randint(1, min(cfg.first_k, max(frames - 1, 1)) + 1, (1,), generator=generator))
        mask[:k] = 1
    elif kind == "keyframes":
        n = int(torch.randint(2, max(min(cfg.keyframes, frames), 2) + 1, (1,), generator=generator))
        inner = torch.randperm(max(frames - 2, 0), generator=generator)[:max(n - 2, 0)] + 1
        mask[[0, frames - 1]] = 1
        mask[inner] = 1
    elif kind == "every_n":
        n = cfg.every_n[int(torch.randint(len(cfg.every_n), (1,), generator=generator))]
        mask[::n] = 1
    elif kind != "none":
        raise ConstraintError(f"unknown mask kind {kind!r}; valid: {', '.join(MASKS)}")
    return mask


@dataclass
class Draws:
    """One batch's conditioning draws: ``mask`` (B, T), ``keep_image`` (B,) bool (False: dropped for guidance),
    ``noise_level`` (B,) and the augmentation noise ``eps`` shaped like the clip."""

    mask: torch.Tensor
    keep_image: torch.Tensor
    noise_level: torch.Tensor
    eps: torch.Tensor


def sample_seed(seed: int, step: int, position: int) -> int:
    """The seed of one sample's conditioning draws: distinct per (run seed, step, global position)."""
    return (seed * 1_000_003 + step * 65_537 + position * 257 + 0x5EED) % (2 ** 63)


def draw(cfg: ConditionConfig, shape: tuple[int, ...], *, seed: int, step: int, positions: list[int]) -> Draws:
    """The draws for a batch of clips ``shape`` (B, C, T, H, W) whose samples sit at global ``positions``."""
    kinds = [k for k, w in cfg.masks.items() if w > 0]
    weights = torch.tensor([cfg.masks[k] for k in kinds]) if kinds else None
    masks, keep, levels, eps = [], [], [], []
    for position in positions:
        g = torch.Generator().manual_seed(sample_seed(seed, step, position))
        kind = kinds[int(torch.multinomial(weights, 1, generator=g))] if kinds else "none"
        masks.append(frame_mask(kind, shape[2], g, cfg))
        keep.append(bool(torch.rand((), generator=g) >= cfg.drop_image))
        levels.append(float(torch.rand((), generator=g)) * cfg.noise_aug)
        eps.append(torch.randn(shape[1:], generator=g))
    return Draws(torch.stack(masks), torch.tensor(keep), torch.tensor(levels), torch.stack(eps))


def conditioned(cond: Condition, videos: torch.Tensor, draws: Draws, cfg: ConditionConfig,
                low_res: torch.Tensor | None = None) -> Condition:
    """``cond`` (the text) with the conditioning of a training batch ``videos`` (B, C, T, H, W, what the backbone
    denoises): the known frames and their mask, the low-resolution clip, noise-augmented at the drawn levels; a
    dropped sample gets a zero mask and a zero low-res clip (what guidance's image-free branch gives the model).
    ``low_res``: the clean low-res clip, by default ``videos`` downsampled; a latent run gives the latents of the
    downsampled pixels, as upscale encodes its input."""
    keep = draws.keep_image.to(videos.device)
    level, eps = draws.noise_level.to(videos.device), draws.eps.to(videos)
    fields = {"noise_level": level}
    if "frames" in cfg.inputs:
        fields["mask"] = draws.mask.to(videos) * keep[:, None].to(videos)
        fields["known"] = augment(videos, level, eps)
    if cfg.low_res > 1:
        f = cfg.low_res
        small = downsample(videos, f) if low_res is None else low_res.to(videos)
        small = augment(small, level, downsample(eps, f) * f)  # area-averaged noise rescaled to unit
        fields["low_res"] = small * keep.to(videos).view(-1, 1, 1, 1, 1)
    return dataclasses.replace(cond, **fields)


def residual_base(videos: torch.Tensor, factor: int, low_res: torch.Tensor | None = None) -> torch.Tensor:
    """What a residual super-resolution model adds its output to: the bicubic upsampling of its clean low-res input
    (``low_res``; by default ``videos`` downsampled ``factor`` times), at the size of ``videos``."""
    from vdmkit.backbones.condition_inputs import upsample

    small = downsample(videos, factor) if low_res is None else low_res.to(videos)
    return upsample(small, tuple(videos.shape[3:]))


def low_res_latents(pipe, pixels: torch.Tensor, factor: int) -> torch.Tensor:
    """A latent super-resolution model's clean low-res input for the pixel clips ``pixels`` (B, 3, T, H, W): the
    latents of the clips area-downsampled ``factor`` times, as upscale encodes the low-res video it is given (the
    downsampled latents of the full-size clip differ: an autoencoder does not commute with pooling)."""
    return pipe.to_latents(downsample(pixels, factor)).float()


def augment(x: torch.Tensor, level: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Variance-preserving noise augmentation of the conditioning: sqrt(1 - s^2) x + s eps, per sample level s."""
    s = level.to(x).view(-1, *([1] * (x.ndim - 1)))
    return (1 - s * s).sqrt() * x + s * eps.to(x)


def downsample(x: torch.Tensor, factor: int) -> torch.Tensor:
    """(B, C, T, H, W) -> (B, C, T, H/factor, W/factor), area-averaged per frame: the low-resolution input of
    super-resolution training."""
    h, w = x.shape[3:]
    if h % factor or w % factor:
        raise ConstraintError(f"super-resolution x{factor} needs clips whose height and width divide by {factor}, "
                              f"got {h}x{w}")
    return unfold_time(F.avg_pool2d(fold_time(x), factor), x.shape[2])  # (B T, C, H/f, W/f) per frame


def check_noise_level(level) -> float:
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not math.isfinite(level) \
            or not 0 <= level <= MAX_NOISE_LEVEL:
        raise ConstraintError(f"noise_level must be a number in [0, {MAX_NOISE_LEVEL}], got {level!r}")
    return float(level)
