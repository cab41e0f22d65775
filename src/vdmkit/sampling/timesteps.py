"""Which training timesteps a sampler visits: spacings as in diffusers (Lin et al. 2023, table 2)."""

from __future__ import annotations

import numbers

import torch

SPACINGS = ("leading", "linspace", "trailing")


def check_steps(steps, num_train_steps: int) -> int:
    """Validate a step count before any model is loaded."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise ValueError(f"steps must be a whole number, got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if steps > num_train_steps:
        raise ValueError(f"steps={steps} is more than the model's {num_train_steps} training timesteps; use <= {num_train_steps}")
    return int(steps)


def check_spacing(spacing: str) -> str:
    if spacing not in SPACINGS:
        raise ValueError(f"unknown timestep spacing {spacing!r}; valid: {', '.join(SPACINGS)}")
    return spacing


def make_timesteps(num_train_steps: int, steps: int, spacing: str = "trailing") -> torch.Tensor:
    """Descending int64 timesteps, exactly ``steps`` of them, in ``[0, num_train_steps)``."""
    steps = check_steps(steps, num_train_steps)
    check_spacing(spacing)
    n = num_train_steps
    if spacing == "linspace":
        ts = torch.linspace(0, n - 1, steps, dtype=torch.float64).round()
    elif spacing == "leading":
        ts = torch.arange(steps, dtype=torch.float64) * (n // steps)
    else:  # trailing
        ts = (torch.arange(n, 0, -n / steps, dtype=torch.float64).round() - 1).flip(0)
    return ts.long().flip(0)
