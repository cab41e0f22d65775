"""generate(): noise -> sampler(guided Denoiser) -> video. The only sampling module that wires stages."""

from __future__ import annotations

import secrets
from typing import Any, Callable

import torch

from vdmkit.diffusion.denoiser import Denoiser
from vdmkit.registry import check_sampler
from vdmkit.sampling.guidance import guided
from vdmkit.sampling.timesteps import CONTINUOUS_SPACINGS, DISCRETE_SPACINGS, make_timesteps

MAX_SEED = 2**63 - 1


def check_seed(seed) -> int:
    """None draws a random seed (return it, so it can be recorded); otherwise an int in [0, 2**63)."""
    if seed is None:
        return secrets.randbelow(MAX_SEED)
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"seed must be an integer in [0, 2**63 - 1] or None for random, got {seed!r}")
    return seed


def default_spacing(sampler_entry, process) -> str:
    """The sampler's own spacing where the process offers it, else the process's default."""
    valid = CONTINUOUS_SPACINGS if process.continuous else DISCRETE_SPACINGS
    if sampler_entry.spacing in valid:
        return sampler_entry.spacing
    return process.default_spacing


def generate(
    denoiser: Denoiser,
    shape: tuple[int, int, int, int, int],
    cond: Any,
    uncond: Any,
    *,
    sampler: str = "ddim",
    steps: int = 50,
    guidance: float = 1.0,
    guidance_rescale: float = 0.0,
    spacing: str | None = None,
    timesteps: list | None = None,
    seed: int = 0,
    callback: Callable | None = None,
    **knobs,
) -> torch.Tensor:
    """Sample a batch ``shape`` = (B, C, T, H, W) from ``denoiser`` conditioned on ``cond``.

    ``spacing=None`` uses the sampler's or the process's default; ``timesteps`` overrides steps/spacing.
    """
    process = denoiser.process
    entry = check_sampler(sampler, process.name)
    ts = make_timesteps(process, steps, spacing or default_spacing(entry, process), timesteps)
    device = next(denoiser.parameters()).device
    generator = torch.Generator(device=device).manual_seed(check_seed(seed))
    x = torch.randn(shape, generator=generator, device=device)
    fn = guided(denoiser, cond, uncond, guidance, guidance_rescale)
    return entry.build(fn, x, ts, process, generator=generator, callback=callback, **knobs)
