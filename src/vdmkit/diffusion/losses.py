"""Training loss: per-target MSE with uniform or min-SNR-gamma weighting (Hang et al. 2023)."""

from __future__ import annotations

from typing import Any, Callable

import torch

from vdmkit.diffusion.process import NoiseProcess, training_target
from vdmkit.errors import ConfigError

WEIGHTINGS = ("uniform", "min_snr")
MIN_SNR_GAMMA = 5.0  # the paper's recommended gamma


def loss_weight(snr: torch.Tensor, prediction: str, weighting: str, gamma: float = MIN_SNR_GAMMA) -> torch.Tensor:
    """Per-sample weight that turns the target's MSE into min-SNR-gamma weighted x0 error."""
    if weighting == "uniform":
        return torch.ones_like(snr)
    if weighting != "min_snr":
        raise ConfigError(f"unknown loss weighting {weighting!r}; valid: {', '.join(WEIGHTINGS)}")
    clipped = snr.clamp(max=gamma)
    # the x0-space weight min(snr, gamma) expressed for each target's MSE
    return {"x0": clipped, "eps": clipped / snr, "v": clipped / (snr + 1)}[prediction]


def diffusion_loss(
    model: Callable[[torch.Tensor, torch.Tensor, Any], torch.Tensor],
    x0: torch.Tensor,
    cond: Any,
    process: NoiseProcess,
    prediction: str,
    *,
    weighting: str = "uniform",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Sample t ~ U{0..N-1} and eps ~ N(0, I), noise ``x0`` (B, C, T, H, W), return the mean weighted MSE."""
    b = x0.shape[0]
    t = torch.randint(0, process.num_steps, (b,), generator=generator, device=x0.device)
    eps = torch.randn(x0.shape, generator=generator, device=x0.device, dtype=x0.dtype)
    alpha, sigma = process.alpha_sigma(t, x0)
    x_t = alpha * x0 + sigma * eps
    pred = model(x_t, t, cond).float()
    target = training_target(x0, eps, alpha, sigma, prediction)
    per_sample = (pred - target).pow(2).flatten(1).mean(1)
    weight = loss_weight(process.snr(t).to(per_sample), prediction, weighting)
    return (weight * per_sample).mean()
