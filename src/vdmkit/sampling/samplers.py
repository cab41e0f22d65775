"""Sampler functions. One signature for all:

    sample_X(denoiser, x, ts, process, *, generator=None, callback=None, **knobs) -> x

``denoiser(x_t, t) -> x0_hat`` (condition and guidance already bound), ``x`` is the starting noise
(B, C, T, H, W), ``ts`` the descending timesteps. No state between calls; randomness only from
``generator``. Each step checks for NaN/inf and raises NonFiniteError with the step index.
"""

from __future__ import annotations

from typing import Callable

import torch

from vdmkit.diffusion.process import NoiseProcess, x0_to_eps
from vdmkit.errors import NonFiniteError

Denoise = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
Callback = Callable[[int, torch.Tensor, torch.Tensor], None]


def _pairs(ts: torch.Tensor):
    """(t, t_prev) along the trajectory; the last t_prev is -1, the clean data."""
    ts = [int(t) for t in ts]
    return list(zip(ts, ts[1:] + [-1]))


def _check_finite(x: torch.Tensor, step: int, t: int) -> None:
    if not torch.isfinite(x).all():
        raise NonFiniteError(f"NaN/inf in the sample at step {step} (t={t}); nothing was written")


def _noise(x: torch.Tensor, generator) -> torch.Tensor:
    return torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


@torch.no_grad()
def sample_ddim(
    denoiser: Denoise,
    x: torch.Tensor,
    ts: torch.Tensor,
    process: NoiseProcess,
    *,
    eta: float = 0.0,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DDIM (Song et al. 2021, eq. 12): deterministic at ``eta=0``, DDPM-like at ``eta=1``."""
    for i, (t, t_prev) in enumerate(_pairs(ts)):
        a_t, s_t = process.alpha_sigma(torch.tensor(t), x)
        a_prev, s_prev = process.alpha_sigma(torch.tensor(t_prev), x)
        x0 = denoiser(x, torch.full((x.shape[0],), t, device=x.device))
        eps = x0_to_eps(x0, x, a_t, s_t)
        # eq. 16: sigma_t(eta) = eta * sqrt((1 - a_prev^2) / (1 - a_t^2)) * sqrt(1 - a_t^2 / a_prev^2)
        noise_std = eta * (s_prev / s_t) * (1 - (a_t / a_prev) ** 2).clamp(min=0).sqrt()
        x = a_prev * x0 + (s_prev**2 - noise_std**2).clamp(min=0).sqrt() * eps
        if eta > 0 and t_prev >= 0:
            x = x + noise_std * _noise(x, generator)
        _check_finite(x, i, t)
        if callback is not None:
            callback(i, x, x0)
    return x


@torch.no_grad()
def sample_ddpm(
    denoiser: Denoise,
    x: torch.Tensor,
    ts: torch.Tensor,
    process: NoiseProcess,
    *,
    generator: torch.Generator | None = None,
    callback: Callback | None = None,
) -> torch.Tensor:
    """DDPM ancestral sampling from the posterior q(x_prev | x_t, x0_hat) (Ho et al. 2020, eq. 6-7),
    generalised to strided timesteps."""
    for i, (t, t_prev) in enumerate(_pairs(ts)):
        a_t, s_t = process.alpha_sigma(torch.tensor(t), x)
        a_prev, s_prev = process.alpha_sigma(torch.tensor(t_prev), x)
        x0 = denoiser(x, torch.full((x.shape[0],), t, device=x.device))
        alpha_step_sq = (a_t / a_prev) ** 2  # alpha_t in DDPM notation for this (possibly strided) step
        beta = 1 - alpha_step_sq
        mean = (a_prev * beta / s_t**2) * x0 + (alpha_step_sq.sqrt() * s_prev**2 / s_t**2) * x
        if t_prev >= 0:
            x = mean + (beta * s_prev**2 / s_t**2).sqrt() * _noise(x, generator)
        else:
            x = mean
        _check_finite(x, i, t)
        if callback is not None:
            callback(i, x, x0)
    return x
