"""Which times a sampler visits.

Discrete processes use the spacings of diffusers (Lin et al. 2024, table 2): ``leading``, ``linspace``,
``trailing``, plus ``lcm`` (LCM's subset of a 50-step skipping schedule). Continuous processes use
``trailing`` (t = 1, 1 - 1/n, ..., 1/n) or ``linspace`` (diffusers' FlowMatchEulerDiscreteScheduler:
n values from 1 to shift(1/1000), then the process's time shift). ``custom`` timesteps are any strictly
descending list. Samplers step between consecutive visited times and end on the clean data.
"""

from __future__ import annotations

import numbers
from typing import Sequence

import torch

DISCRETE_SPACINGS = ("leading", "linspace", "trailing", "lcm")
CONTINUOUS_SPACINGS = ("linspace", "trailing")
SPACINGS = DISCRETE_SPACINGS
LCM_ORIGINAL_STEPS = 50  # LCM distils onto a 50-step DDIM skipping schedule (Luo et al. 2023)


def check_steps(steps, num_train_steps: int) -> int:
    """Validate a step count before any model is loaded."""
    if isinstance(steps, bool) or not isinstance(steps, numbers.Integral):
        raise ValueError(f"steps must be a whole number, got {steps!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if steps > num_train_steps:
        raise ValueError(f"steps={steps} is more than the model's {num_train_steps} training timesteps; "
                         f"use <= {num_train_steps}")
    return int(steps)


def check_spacing(spacing: str, continuous: bool = False) -> str:
    valid = CONTINUOUS_SPACINGS if continuous else DISCRETE_SPACINGS
    if spacing not in valid:
        kind = "continuous-time" if continuous else "discrete"
        raise ValueError(f"unknown timestep spacing {spacing!r} for a {kind} process; valid: {', '.join(valid)}")
    return spacing


def discrete_timesteps(num_train_steps: int, steps: int, spacing: str = "trailing") -> torch.Tensor:
    """Descending int64 timesteps, exactly ``steps`` of them, in ``[0, num_train_steps)``."""
    steps = check_steps(steps, num_train_steps)
    check_spacing(spacing)
    n = num_train_steps
    if spacing == "linspace":
        ts = torch.linspace(0, n - 1, steps, dtype=torch.float64).round()
    elif spacing == "leading":
        ts = torch.arange(steps, dtype=torch.float64) * (n // steps)
    elif spacing == "lcm":
        if steps > LCM_ORIGINAL_STEPS:
            raise ValueError(f"the lcm spacing picks from {LCM_ORIGINAL_STEPS} steps; got steps={steps}")
        origin = (torch.arange(1, LCM_ORIGINAL_STEPS + 1, dtype=torch.float64) * (n // LCM_ORIGINAL_STEPS) - 1).flip(0)
        index = torch.floor(torch.arange(steps, dtype=torch.float64) * LCM_ORIGINAL_STEPS / steps).long()
        return origin[index].long()
    else:  # trailing
        ts = (torch.arange(n, 0, -n / steps, dtype=torch.float64).round() - 1).flip(0)
    return ts.long().flip(0)


def continuous_timesteps(steps: int, spacing: str, shift_time=None, num_train_steps: int = 1000) -> torch.Tensor:
    """Descending float64 times in (0, 1]; ``shift_time`` maps them through the process's time shift."""
    steps = check_steps(steps, num_train_steps)
    check_spacing(spacing, continuous=True)
    shift_time = shift_time or (lambda t: t)
    if spacing == "linspace":  # as diffusers' flow-matching schedulers, whose last value is shifted twice
        last = float(shift_time(torch.tensor(1.0 / num_train_steps, dtype=torch.float64)))
        ts = torch.linspace(1.0, last, steps, dtype=torch.float64)
    else:
        ts = 1.0 - torch.arange(steps, dtype=torch.float64) / steps
    return shift_time(ts)


def check_custom_timesteps(timesteps: Sequence, process) -> torch.Tensor:
    """A user-given list: strictly descending, finite, inside the process's time range."""
    try:
        ts = torch.as_tensor(list(timesteps), dtype=torch.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"timesteps must be a list of numbers, got {timesteps!r}") from err
    if ts.ndim != 1 or ts.numel() == 0:
        raise ValueError("timesteps must be a non-empty flat list")
    if not torch.isfinite(ts).all():
        raise ValueError(f"timesteps must be finite, got {ts.tolist()}")
    if (ts[1:] >= ts[:-1]).any():
        raise ValueError(f"timesteps must be strictly descending (noisiest first), got {ts.tolist()}")
    if process.continuous:
        if ts[0] > 1 or ts[-1] <= 0:
            raise ValueError(f"continuous timesteps must lie in (0, 1], got {ts.tolist()}")
        return ts
    if (ts != ts.round()).any():
        raise ValueError(f"discrete timesteps must be whole numbers, got {ts.tolist()}")
    if ts[0] > process.num_train_steps - 1 or ts[-1] < 0:
        raise ValueError(f"timesteps must lie in [0, {process.num_train_steps - 1}], got {ts.tolist()}")
    return ts.long()


def make_timesteps(process, steps: int | None = None, spacing: str | None = None,
                   timesteps: Sequence | None = None) -> torch.Tensor:
    """The descending times to visit: ``timesteps`` if given, else ``steps`` with ``spacing``
    (``None`` = the process's default). ``process`` may be an int N for a discrete process of N steps."""
    if timesteps is not None:
        return check_custom_timesteps(timesteps, process)
    if isinstance(process, numbers.Integral):
        return discrete_timesteps(int(process), steps, spacing or "trailing")
    spacing = spacing or process.default_spacing
    if process.continuous:
        return continuous_timesteps(steps, spacing, getattr(process, "shift_time", None), process.num_train_steps)
    return discrete_timesteps(process.num_train_steps, steps, spacing)
