"""Training loss: per-target MSE with uniform, min-SNR-gamma (Hang et al. 2023) or SD3 logit-normal weighting.

``logit_normal`` weights by drawing the training time from a logit-normal density (Esser et al. 2024), which
for rectified flow is SD3's recipe; the others draw t uniformly and weight each sample's error.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable

import torch

from vdmkit.device import randn
from vdmkit.diffusion.process import NoiseProcess, check_prediction, training_target
from vdmkit.errors import ConfigError

WEIGHTINGS = ("uniform", "min_snr", "logit_normal")
MIN_SNR_GAMMA = 5.0  # the paper's recommended gamma


def loss_weight(snr: torch.Tensor, prediction: str, weighting: str, gamma: float = MIN_SNR_GAMMA,
                sigma_sq: torch.Tensor | None = None) -> torch.Tensor:
    """Per-sample weight that turns the target's MSE into min-SNR-gamma weighted x0 error. ``sigma_sq``: the noise
    variance at each sample's time, which the v target's factor needs outside variance-preserving processes (None:
    a VP process, sigma^2 = 1 / (snr + 1))."""
    if weighting in ("uniform", "logit_normal"):
        return torch.ones_like(snr)
    if weighting != "min_snr":
        raise ConfigError(f"unknown loss weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    if isinstance(gamma, bool) or not isinstance(gamma, numbers.Real) or not 0 < gamma < math.inf:
        raise ConfigError(f"min-SNR gamma must be a positive finite number (the paper's {MIN_SNR_GAMMA:g}), "
                          f"got {gamma!r}")
    check_prediction(prediction)
    clipped = snr.clamp(max=gamma)
    # the x0-space weight min(snr, gamma) expressed for each target's MSE: |x0 err|^2 = |target err|^2 * factor
    # (eps: 1/snr; v: sigma^2 / (alpha^2 + sigma^2)^2 = 1 / (sigma^2 (snr + 1)^2), 1/(snr+1) under VP; velocity
    # under rectified flow, sigma = t = 1/(1+sqrt(snr)): t^2)
    v_factor = 1 / (snr + 1) if sigma_sq is None else 1 / (sigma_sq * (snr + 1) ** 2)
    factor = {"x0": torch.ones_like(snr), "eps": 1 / snr, "v": v_factor,
              "velocity": 1 / (1 + snr.sqrt()) ** 2}[prediction]
    return clipped * factor


def draw_noise(process: NoiseProcess, shape, weighting: str, generator: torch.Generator | None, device,
               dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """(t (B,), eps (B, C, T, H, W)) for a batch of ``shape``, drawn in that order from ``generator``: t uniform,
    or logit-normal for that weighting; eps ~ N(0, I). A CPU generator gives the same numbers on every device."""
    density = "logit_normal" if weighting == "logit_normal" else "uniform"
    t = process.sample_time(shape[0], generator, device, density)
    return t, randn(shape, generator, device, dtype)


def diffusion_loss(
    model: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor],
    x0: torch.Tensor,
    cond: Any,
    process: NoiseProcess,
    prediction: str,
    *,
    weighting: str = "uniform",
    generator: torch.Generator | None = None,
    noise: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> torch.Tensor:
    """Noise ``x0`` (B, C, T, H, W) at times t with eps (``noise``, else :func:`draw_noise` from ``generator``) and
    return the mean weighted MSE of ``model(x_t, t, cond)``'s ``prediction``. ConfigError for a prediction the process
    does not support (as Denoiser refuses it: 'velocity' on a VP process trained eps - x0 unsaid, before 2026-12-07)."""
    check_prediction(prediction, process)
    t, eps = noise if noise is not None else draw_noise(process, x0.shape, weighting, generator, x0.device, x0.dtype)
    alpha, sigma = process.alpha_sigma(t, x0)
    x_t = alpha * x0 + sigma * eps
    pred = model(x_t, process.model_time(t), cond).float()
    target = training_target(x0, eps, alpha, sigma, prediction)
    per_sample = (pred - target).pow(2).flatten(1).mean(1)
    sigma_sq = None if process.name.startswith("vp") else process.alpha_sigma(t, per_sample)[1].pow(2)
    weight = loss_weight(process.snr(t).to(per_sample), prediction, weighting, sigma_sq=sigma_sq)
    return (weight * per_sample).mean()
