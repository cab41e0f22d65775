"""Discrete noise schedules: ``alpha_bar[t] = prod_{s<=t} (1 - beta_s)`` for t = 0 .. N-1.

Notation (DDPM, Ho et al. 2020): ``x_t = sqrt(alpha_bar_t) x_0 + sqrt(1 - alpha_bar_t) eps``.
"""

from __future__ import annotations

import math

import torch

# DDPM's linear schedule endpoints (Ho et al. 2020, section 4).
DDPM_BETA_START = 1e-4
DDPM_BETA_END = 0.02
# Latent/Stable Diffusion's "scaled linear" endpoints: betas linear in sqrt(beta) (LDM, Rombach et al. 2022).
SCALED_LINEAR_BETA_START = 0.00085
SCALED_LINEAR_BETA_END = 0.012
# Improved DDPM cosine schedule offset and beta cap (Nichol & Dhariwal 2021, eq. 17 and below).
COSINE_OFFSET = 0.008
COSINE_MAX_BETA = 0.999


def linear_alphas_cumprod(
    num_steps: int, beta_start: float = DDPM_BETA_START, beta_end: float = DDPM_BETA_END
) -> torch.Tensor:
    """alpha_bar for betas spaced linearly from ``beta_start`` to ``beta_end`` (float64, shape (N,))."""
    betas = torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0)


def scaled_linear_alphas_cumprod(
    num_steps: int, beta_start: float = SCALED_LINEAR_BETA_START, beta_end: float = SCALED_LINEAR_BETA_END
) -> torch.Tensor:
    """alpha_bar for sqrt(beta) spaced linearly (Stable Diffusion, ModelScope T2V, AnimateDiff)."""
    betas = torch.linspace(beta_start**0.5, beta_end**0.5, num_steps, dtype=torch.float64) ** 2
    return torch.cumprod(1.0 - betas, dim=0)


def cosine_alphas_cumprod(num_steps: int, offset: float = COSINE_OFFSET) -> torch.Tensor:
    """alpha_bar(t) = f(t)/f(0), f(t) = cos^2(((t/N + s)/(1 + s)) pi/2), betas capped at 0.999."""
    steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(max=COSINE_MAX_BETA)
    return torch.cumprod(1.0 - betas, dim=0)


def shift_alphas_cumprod(alphas_cumprod: torch.Tensor, shift: float) -> torch.Tensor:
    """Divide the SNR at every step by ``shift**2`` (log-SNR shift of -2 log(shift)).

    Larger or longer inputs carry more redundant signal, so the same noise level destroys less of
    them; shifting towards noise restores the high-noise regime where global layout and motion are
    decided (Hoogeboom et al. 2023 "simple diffusion"; SD3's time shift is the same map for flows).
    """
    snr = alphas_cumprod / (1 - alphas_cumprod) / shift**2
    return snr / (1 + snr)


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Shift and scale sqrt(alpha_bar) so the last step has SNR exactly 0 and the first is unchanged
    (Lin et al. 2024, "Common Diffusion Noise Schedules and Sample Steps are Flawed", algorithm 1).

    Without it the model never sees pure noise in training yet starts from pure noise at sampling time,
    which limits it to medium brightness. Needs a v or x0 target: eps is undefined at SNR 0.
    """
    root = alphas_cumprod.sqrt()
    first, last = root[0], root[-1]
    return ((root - last) * first / (first - last)) ** 2


SCHEDULES = {
    "linear": linear_alphas_cumprod,
    "scaled_linear": scaled_linear_alphas_cumprod,
    "cosine": cosine_alphas_cumprod,
}
